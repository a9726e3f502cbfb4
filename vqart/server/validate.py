"""The one place that checks Socket.IO payloads: every request becomes a typed dataclass or a PayloadError."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vqart.data import parse_ref
from vqart.errors import VqartError

MAX_N = 64
MAX_STEPS = 512
MAX_FPS = 60.0
MAX_WALK_FRAMES = 512
MAX_TEMPERATURE = 4.0
MAX_SEED = 2**32 - 1
MAX_ID_CHARS = 64
MAX_UPLOAD_BYTES = 512 * 1024
# The Engine.IO hard limit: a message above it drops the connection, so uploads are refused (politely) well before.
MAX_MESSAGE_BYTES = 2 * MAX_UPLOAD_BYTES
MAX_IMAGE_SIDE = 1024

SAMPLERS = ("auto", "prior", "unigram")
METHODS = ("slerp", "lerp")
MODES = ("sample", "interpolate", "walk", "motion")
MAX_NAME_CHARS = 64
SOURCES = ("dataset", "sample")

RequestId = str | int | None
Ref = str | np.ndarray  # "sketch:frame", or an uploaded image already decoded to uint8 (H, W)


class PayloadError(VqartError):
    """A request the server refuses; `code` is machine-readable, the message says what to change."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Sample:
    id: RequestId
    n: int = 1
    temperature: float = 1.0
    seed: int | None = None
    sampler: str = "auto"


@dataclass(frozen=True)
class Interpolate:
    id: RequestId
    a: Ref
    b: Ref
    steps: int = 30
    method: str = "slerp"


@dataclass(frozen=True)
class Reconstruct:
    id: RequestId
    image: np.ndarray


@dataclass(frozen=True)
class Stream:
    id: RequestId
    mode: str = "walk"
    fps: float = 30.0
    temperature: float = 1.0
    seed: int | None = None
    sampler: str = "auto"
    a: Ref | None = None
    b: Ref | None = None
    steps: int = 60
    method: str = "slerp"
    frames: int = 120
    source: str = "dataset"
    start: Ref | None = None  # motion: the start frame ("sketch:frame" or image bytes); None picks one by the seed
    like: str | None = None  # motion: the sketch to steer toward (default: the start's)


@dataclass(frozen=True)
class Stop:
    id: RequestId


def request_id(payload: Any) -> RequestId:
    """The payload's `id` if it is one we can echo (short string or integer), else None."""
    if not isinstance(payload, dict):
        return None
    rid = payload.get("id")
    if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS:
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) <= 2**53:
        return rid
    return None


def _fields(payload: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The payload as a dict with a valid id and no unknown keys."""
    if not isinstance(payload, dict):
        raise PayloadError("bad_payload", f"payload must be an object with an id, got {type(payload).__name__}")
    unknown = sorted(str(k)[:32] for k in payload if k not in allowed and k != "id")
    if unknown:
        raise PayloadError("bad_payload", f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    if "id" not in payload or payload["id"] is None:
        raise PayloadError("bad_payload", "missing id: every request carries an id (string or integer) to echo")
    if request_id(payload) is None:
        raise PayloadError("bad_payload", f"id must be a string of at most {MAX_ID_CHARS} characters or an integer")
    return payload


def _int(payload: dict, key: str, default: int | None, lo: int, hi: int) -> int | None:
    """An optional integer field within [lo, hi]."""
    value = payload.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JavaScript has no integer type: 4.0 arrives for 4
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError("bad_payload", f"{key} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise PayloadError("out_of_range", f"{key}={value} is out of range; use {lo}..{hi}")
    return value


def _float(payload: dict, key: str, default: float, lo: float, hi: float) -> float:
    """An optional number field within (lo, hi]."""
    value = payload.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise PayloadError("bad_payload", f"{key} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and lo < value <= hi):
        raise PayloadError("out_of_range", f"{key}={value!r} is out of range; use a number above {lo} and at most {hi}")
    return float(value)


def _choice(payload: dict, key: str, default: str, choices: tuple[str, ...]) -> str:
    """An optional string field from a fixed set."""
    value = payload.get(key, default)
    if value not in choices:
        raise PayloadError("bad_payload", f"{key} must be one of {list(choices)}, got {str(value)[:40]!r}")
    return value


def decode_image(data: Any, key: str = "image") -> np.ndarray:
    """Uploaded image bytes (PNG, JPEG, ...) to uint8 (H, W) grayscale, refusing big or unreadable ones."""
    if not isinstance(data, (bytes, bytearray)):
        raise PayloadError("bad_payload", f"{key} must be image bytes (PNG), got {type(data).__name__}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise PayloadError("too_large", f"{key} is {len(data)} bytes; uploads are limited to {MAX_UPLOAD_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            # Check the header's size before decoding so a tiny file cannot expand into a huge bitmap.
            if max(img.size) > MAX_IMAGE_SIDE:
                raise PayloadError(
                    "too_large", f"{key} is {img.size[0]}x{img.size[1]}; at most {MAX_IMAGE_SIDE} px a side"
                )
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except PayloadError:
        raise
    except Exception as err:  # noqa: BLE001 - hostile bytes make PIL raise many types; all mean "unreadable"
        raise PayloadError(
            "bad_payload", f"{key} is not a readable image ({type(err).__name__}); send PNG bytes"
        ) from None


def _ref(payload: dict, key: str) -> Ref:
    """A frame: a "sketch:frame" reference or uploaded image bytes."""
    if key not in payload:
        raise PayloadError("bad_payload", f"missing {key}: a frame reference like 'orbits:12' or PNG bytes")
    value = payload[key]
    if isinstance(value, str):
        if len(value) > 200:
            raise PayloadError("bad_payload", f"{key} is too long for a frame reference")
        try:
            parse_ref(value)
        except VqartError as err:
            raise PayloadError("bad_payload", str(err)) from None
        return value.strip()
    return decode_image(value, key)


def _name(payload: dict, key: str) -> str | None:
    """An optional sketch name."""
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
        raise PayloadError("bad_payload", f"{key} must be a sketch name of 1..{MAX_NAME_CHARS} characters")
    return value


def parse_info(payload: Any) -> RequestId:
    """An `info` request: just an id (optional here, since info has no side effects)."""
    return request_id(payload)


def parse_sample(payload: Any) -> Sample:
    """A `sample` request."""
    p = _fields(payload, ("n", "temperature", "seed", "sampler"))
    return Sample(
        id=p["id"],
        n=_int(p, "n", 1, 1, MAX_N),
        temperature=_float(p, "temperature", 1.0, 0.0, MAX_TEMPERATURE),
        seed=_int(p, "seed", None, 0, MAX_SEED),
        sampler=_choice(p, "sampler", "auto", SAMPLERS),
    )


def parse_interpolate(payload: Any) -> Interpolate:
    """An `interpolate` request."""
    p = _fields(payload, ("a", "b", "steps", "method"))
    return Interpolate(
        id=p["id"],
        a=_ref(p, "a"),
        b=_ref(p, "b"),
        steps=_int(p, "steps", 30, 2, MAX_STEPS),
        method=_choice(p, "method", "slerp", METHODS),
    )


def parse_reconstruct(payload: Any) -> Reconstruct:
    """A `reconstruct` request."""
    p = _fields(payload, ("image",))
    if "image" not in p:
        raise PayloadError("bad_payload", "missing image: send the frame as PNG bytes")
    return Reconstruct(id=p["id"], image=decode_image(p["image"]))


def parse_stream(payload: Any) -> Stream:
    """A `stream` request: mode-specific fields are checked only for that mode."""
    p = _fields(
        payload,
        ("mode", "fps", "temperature", "seed", "sampler", "a", "b", "steps", "method", "frames", "source", "start", "like"),
    )
    mode = _choice(p, "mode", "walk", MODES)
    interpolating, moving = mode == "interpolate", mode == "motion"
    return Stream(
        id=p["id"],
        mode=mode,
        fps=_float(p, "fps", 30.0, 0.0, MAX_FPS),
        temperature=_float(p, "temperature", 1.0, 0.0, MAX_TEMPERATURE),
        seed=_int(p, "seed", None, 0, MAX_SEED),
        sampler=_choice(p, "sampler", "auto", SAMPLERS),
        a=_ref(p, "a") if interpolating else None,
        b=_ref(p, "b") if interpolating else None,
        steps=_int(p, "steps", 60, 2, MAX_STEPS),
        method=_choice(p, "method", "slerp", METHODS),
        frames=_int(p, "frames", 120, 8, MAX_WALK_FRAMES),
        source=_choice(p, "source", "dataset", SOURCES),
        start=_ref(p, "start") if moving and p.get("start") is not None else None,
        like=_name(p, "like") if moving else None,
    )


def parse_stop(payload: Any) -> Stop:
    """A `stop` request naming the stream's id."""
    p = _fields(payload, ())
    return Stop(id=p["id"])
