"""JSON in and out of the service, with orjson where it gives the same answer, and ``json`` where it cannot.

- :func:`loads`: orjson parses the body; whatever it refuses (NaN, Infinity, integers beyond 64 bits, nesting
  over 1,024 levels, UTF-16, lone surrogates...) goes to :func:`~tripduration.service.schemas.load_json`, so
  every refusal keeps its field-naming 400 answer and every body ``json`` accepts is still accepted.
- :func:`dumps`: orjson, and ``json`` (``default=str``) for what orjson cannot write (a NaN, a big integer).
- :func:`prediction_body`: the ``/predict`` answer, minutes rounded to 3 decimals as Python's ``round``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from tripduration.service.schemas import load_json


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return load_json(body)


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=str)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return json.dumps(value, default=str).encode()


def prediction_body(minutes: np.ndarray, model: dict[str, Any]) -> bytes:
    """``{"predictions": [{"duration_min": m}, ...], "model": {"name", "version"}}``."""
    rounded = [round(m, 3) for m in np.asarray(minutes, dtype=np.float64).tolist()]
    if not np.isfinite(minutes).all():  # orjson writes null for NaN; keep what json wrote before
        return json.dumps({"predictions": [{"duration_min": m} for m in rounded], "model": model}).encode()
    return orjson.dumps({"predictions": [{"duration_min": m} for m in rounded], "model": model})
