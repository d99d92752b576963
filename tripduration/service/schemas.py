"""The request and answer contract of the service: pydantic types with field constraints, and the guarded parse.

A trip is a ``TypedDict`` validated by one ``TypeAdapter`` for the whole list (validation runs in pydantic-core,
no model object per trip), with the same rules the hand-written parser had: integer codes in fixed ranges (an
integral float such as ``74.0`` is an integer, a bool or a string is not), a finite distance in 0..100 miles, an
ISO pickup time in the years 2000..2100 (an offset is converted to New York time), and no other field (a field
only known after the trip, such as ``fare_amount``, would leak the answer).

The body is parsed here with ``json.loads`` rather than by the framework, because Python's own limits turn
some malformed bodies into exceptions that are not ``JSONDecodeError``: an integer literal of more than 4,300
digits raises ``ValueError`` and deep nesting ``RecursionError``. Every refusal is an :class:`InputError`
answered ``{"error", "field", "index"}`` with a 4xx status, naming the field and the value.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NotRequired

import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from tripduration.training.features import MODEL_INPUT_COLUMNS

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
MAX_BODY_BYTES = 1_000_000
MAX_TRIPS = 10_000
REQUIRED_FIELDS = ("pickup_datetime", "PULocationID", "DOLocationID", "trip_distance")
OPTIONAL_FIELDS = ("VendorID", "RatecodeID", "trip_type", "passenger_count")
INT_RANGES = {
    "PULocationID": (1, 265),
    "DOLocationID": (1, 265),
    "VendorID": (0, 99),
    "RatecodeID": (0, 99),
    "trip_type": (0, 9),
    "passenger_count": (0, 20),
}
YEARS = (2000, 2100)
MAX_VALUE_CHARS = 60  # a value quoted in an error is cut to this length (a 5,000-digit number is not echoed)


class InputError(ValueError):
    """A request the service refuses (answered with 4xx)."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None, status: int = 400):
        super().__init__(message)
        self.field, self.index, self.status = field, index, status

    def as_dict(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, "index": self.index}


class HugeInteger:
    """An integer literal too long for ``int()`` (Python refuses more than 4,300 digits): kept as a marker so
    that validation names the field it was sent in instead of failing the whole body as 'not JSON'."""

    def __init__(self, digits: str) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<integer of {len(self.digits.lstrip('-'))} digits>"


def show(value: Any) -> str:
    """``repr`` of a value for an error message, cut so that a huge value does not make a huge answer."""
    text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else f"{text[:MAX_VALUE_CHARS]}... ({len(text)} characters)"


# --------------------------------------------------------------------------- field types
def _number(value: Any) -> Any:
    """JSON numbers only: pydantic's lax mode would read ``true`` as 1 and ``"74"`` as 74."""
    if type(value) is int or type(value) is float:  # the common case first: this runs for every code of every trip
        return value
    if isinstance(value, HugeInteger):
        raise PydanticCustomError("number_out_of_range", "the number is out of range")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("not_a_number", "a JSON number is required")
    return value


def _pickup(value: Any) -> dt.datetime:
    """ISO date-time, New York local time; an offset is converted. The year is checked before the conversion
    (``astimezone`` overflows near year 1 or 9999) and after it."""
    if not isinstance(value, str):
        raise PydanticCustomError("not_a_string", "a string 'YYYY-MM-DDTHH:MM:SS' is required")
    try:
        pickup = dt.datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("not_iso", "not an ISO date-time") from None
    _check_year(pickup)
    if pickup.tzinfo is not None:  # TLC times are New York local time: convert, then drop the offset
        pickup = pickup.astimezone(NEW_YORK).replace(tzinfo=None)
        _check_year(pickup)
    return pickup


def _check_year(pickup: dt.datetime) -> None:
    if not YEARS[0] <= pickup.year <= YEARS[1]:
        raise PydanticCustomError("year_range", "outside the years {low}..{high}", {"low": YEARS[0], "high": YEARS[1]})


def _code(name: str, description: str) -> Any:
    low, high = INT_RANGES[name]
    return Annotated[int, Field(ge=low, le=high, description=description), BeforeValidator(_number)]


PickupTime = Annotated[
    dt.datetime,
    Field(
        description="pickup time, New York local time, ISO 'YYYY-MM-DDTHH:MM:SS' (an offset is converted), "
        f"years {YEARS[0]}..{YEARS[1]}",
        examples=["2021-01-12T08:30:00"],
    ),
    BeforeValidator(_pickup),
]
Distance = Annotated[
    float,
    Field(ge=0, le=100, allow_inf_nan=False, description="trip distance in miles", examples=[1.5]),
    BeforeValidator(_number),  # after Field: constraints first would appear as 'ge'/'le', not JSON schema's names
]


class Trip(TypedDict):
    """One trip as known at dispatch time."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    pickup_datetime: PickupTime
    PULocationID: _code("PULocationID", "pickup taxi zone (1..265)")  # type: ignore[valid-type]
    DOLocationID: _code("DOLocationID", "drop-off taxi zone (1..265)")  # type: ignore[valid-type]
    trip_distance: Distance
    VendorID: NotRequired[_code("VendorID", "TPEP/LPEP provider code") | None]  # type: ignore[valid-type]
    RatecodeID: NotRequired[_code("RatecodeID", "rate code (absent for dispatch-app trips)") | None]  # type: ignore[valid-type]
    trip_type: NotRequired[_code("trip_type", "1 street-hail, 2 dispatch") | None]  # type: ignore[valid-type]
    passenger_count: NotRequired[_code("passenger_count", "passengers") | None]  # type: ignore[valid-type]


TRIP_LIST = TypeAdapter(list[Trip])
PredictRequest = Annotated[
    Trip | Annotated[list[Trip], Field(min_length=1, max_length=MAX_TRIPS)],
    Field(description=f"one trip, or a list of 1..{MAX_TRIPS} trips"),
]


class Prediction(BaseModel):
    duration_min: float = Field(description="predicted trip duration in minutes")


class ModelRef(BaseModel):
    name: str | None
    version: str | None


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: ModelRef


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong and how to fix it")
    field: str | None = Field(None, description="the field (or HTTP header) at fault, when there is one")
    index: int | None = Field(None, description="the position of the trip at fault in the list")


class HealthResponse(BaseModel):
    status: str
    version: str | None
    last_error: str | None


class ModelInfo(BaseModel):
    name: str | None
    version: str | None
    algorithm: str | None
    metrics: dict[str, Any]
    trained_months: list[str]
    test_month: str | None
    registered_at: str | None
    model_sha256: str | None


# --------------------------------------------------------------------------- body -> payload -> frame
def _huge_int(text: str) -> int | HugeInteger:
    return int(text) if len(text) <= 4000 else HugeInteger(text)


def load_json(body: bytes) -> Any:
    """``json.loads`` with Python's own limits turned into 400 answers (a too-long integer becomes a
    :class:`HugeInteger` that the field's validation refuses by name)."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(
            f"body is not valid JSON: nested too deeply (over ~{sys.getrecursionlimit()} levels); a trip is a flat "
            "object"
        ) from None
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        pass
    try:
        return json.loads(body, parse_int=_huge_int)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"body is not valid JSON: {exc}") from None


def _field_message(error: Mapping[str, Any]) -> tuple[str, str | None]:
    """One pydantic error as our message (naming field and value) and the field name."""
    loc = error["loc"]
    name = str(loc[1]) if len(loc) > 1 else None
    value = error.get("input")
    if error["type"] == "missing":
        hint = ", as 'YYYY-MM-DDTHH:MM:SS'" if name == "pickup_datetime" else ""
        return f"field {name!r} is required{hint}", name
    if name in INT_RANGES:
        low, high = INT_RANGES[name]
        rule = f"an integer between {low} and {high}"
    elif name == "trip_distance":
        rule = "a number of miles in 0..100"
    else:
        rule = f"an ISO date-time 'YYYY-MM-DDTHH:MM:SS' in the years {YEARS[0]}..{YEARS[1]}"
    return f"field {name!r} must be {rule}, got {show(value)} ({error['msg']})", name


def _error_of(trip_errors: Sequence[Mapping[str, Any]], index: int) -> InputError:
    """The first problem of one trip, unknown fields first (as the hand-written parser did)."""
    unknown = sorted(str(e["loc"][1]) for e in trip_errors if e["type"] == "extra_forbidden")
    if unknown:
        allowed = sorted(REQUIRED_FIELDS + OPTIONAL_FIELDS)
        return InputError(
            f"unknown or not-allowed fields {unknown}; a trip has {allowed} (only what is known at dispatch)",
            field=unknown[0],
            index=index,
        )
    first = trip_errors[0]
    if len(first["loc"]) == 1:
        kind = type(first.get("input")).__name__
        return InputError(f"trip {index} must be a JSON object, got {kind}", index=index)
    message, name = _field_message(first)
    return InputError(message, field=name, index=index)


def to_input_error(exc: ValidationError) -> InputError:
    errors = exc.errors(include_url=False)
    index = min(int(e["loc"][0]) for e in errors)
    return _error_of([e for e in errors if e["loc"][0] == index], index)


def validate_trips(payload: Any) -> list[Trip]:
    """One trip (object) or a list of trips -> validated rows (pickup as naive New York time)."""
    trips = payload if isinstance(payload, list) else [payload]
    if not trips:
        raise InputError("the request holds no trips; send one trip object or a non-empty list")
    if len(trips) > MAX_TRIPS:
        raise InputError(f"at most {MAX_TRIPS} trips per request, got {len(trips)}", status=413)
    try:
        return TRIP_LIST.validate_python(trips)
    except ValidationError as exc:
        raise to_input_error(exc) from None


def to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Validated rows -> the canonical model-input frame (missing optional codes as <NA>)."""
    frame = pd.DataFrame(rows, columns=list(MODEL_INPUT_COLUMNS))
    frame["pickup_datetime"] = pd.to_datetime(frame["pickup_datetime"]).astype("datetime64[us]")
    frame["trip_distance"] = frame["trip_distance"].astype("float64")
    for name in ("PULocationID", "DOLocationID"):
        frame[name] = frame[name].astype("int32")
    for name in OPTIONAL_FIELDS:
        frame[name] = frame[name].astype("Int32")
    return frame


def parse_trips(payload: Any) -> pd.DataFrame:
    """Validate a JSON payload (one trip or a list) into a frame of canonical model inputs."""
    return to_frame(validate_trips(payload))
