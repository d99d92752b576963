"""The prediction service: the production model over HTTP (FastAPI + pydantic under uvicorn), hot-swapped when
the production pointer changes. See :mod:`.app` for the endpoints, :mod:`.schemas` for the request contract,
:mod:`.guards` for the limits, :mod:`.metrics` for ``/metrics`` and :mod:`.server` for ``pipeline.py serve``."""

from tripduration.service.schemas import MAX_BODY_BYTES, MAX_TRIPS, InputError, parse_trips

__all__ = ["MAX_BODY_BYTES", "MAX_TRIPS", "InputError", "parse_trips"]
