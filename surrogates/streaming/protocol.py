"""Wire format of the simulation -> server stream: a ZeroMQ multipart message of two frames,
a JSON header (UTF-8) and the field as raw little-endian bytes. No pickle crosses the socket.

Header keys: v (protocol version), kind ("step" | "bye"), client (int id given by the launcher),
mu (list of floats), step (int), time (float), shape (list of ints), dtype ("float32" | "float64"),
nbytes (int), crc32 (zlib.crc32 of the payload). A "bye" carries `steps`, the number of steps sent.
`decode` checks every field against the server's expectations and raises ProtocolError with the
reason (a short tag used as a counter name) for anything malformed; the server counts and drops it.
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass

import numpy as np

VERSION = 1
DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
MAX_HEADER_BYTES = 4096


class ProtocolError(ValueError):
    """A malformed or foreign message; `reason` is the counter it is booked under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Message:
    kind: str
    client: int
    mu: np.ndarray
    step: int = -1
    time: float = 0.0
    field: np.ndarray | None = None
    steps: int = 0  # for "bye": how many steps the client sent


def encode_step(client: int, mu, step: int, time: float, field: np.ndarray) -> list[bytes]:
    field = np.ascontiguousarray(field)
    if field.dtype.name not in DTYPES:
        field = field.astype(np.float32)
    payload = field.astype(DTYPES[field.dtype.name], copy=False).tobytes()
    header = {"v": VERSION, "kind": "step", "client": int(client), "mu": [float(m) for m in np.ravel(mu)],
              "step": int(step), "time": float(time), "shape": list(field.shape), "dtype": field.dtype.name,
              "nbytes": len(payload), "crc32": zlib.crc32(payload)}
    return [json.dumps(header).encode(), payload]


def encode_bye(client: int, mu, steps: int) -> list[bytes]:
    header = {"v": VERSION, "kind": "bye", "client": int(client), "mu": [float(m) for m in np.ravel(mu)],
              "steps": int(steps)}
    return [json.dumps(header).encode(), b""]


def _int(h: dict, key: str) -> int:
    v = h.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("bad_header", f"{key} = {v!r}: expected an integer")
    return v


def decode(frames: list[bytes], field_size: int, n_params: int, max_steps: int) -> Message:
    """Parse and validate one multipart message for a field of `field_size` values."""
    if len(frames) != 2:
        raise ProtocolError("bad_frames", f"{len(frames)} frames: expected 2 (header, payload)")
    raw, payload = bytes(frames[0]), frames[1]
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("oversized", f"header of {len(raw)} bytes: expected at most {MAX_HEADER_BYTES}")
    try:
        h = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("bad_header", "header is not UTF-8 JSON") from None
    if not isinstance(h, dict) or h.get("v") != VERSION:
        raise ProtocolError("bad_header", f"expected a JSON object with v = {VERSION}")
    kind = h.get("kind")
    client = _int(h, "client")
    mu = h.get("mu")
    if (not isinstance(mu, list) or len(mu) != n_params
            or not all(isinstance(m, (int, float)) and math.isfinite(m) for m in mu)):
        raise ProtocolError("bad_header", f"mu = {mu!r}: expected {n_params} finite numbers")
    mu = np.asarray(mu, dtype=float)
    if kind == "bye":
        return Message("bye", client, mu, steps=_int(h, "steps"))
    if kind != "step":
        raise ProtocolError("bad_header", f"kind = {kind!r}: expected 'step' or 'bye'")
    step = _int(h, "step")
    if not 0 <= step <= max_steps:
        raise ProtocolError("bad_header", f"step = {step}: expected 0..{max_steps}")
    t = h.get("time")
    if not isinstance(t, (int, float)) or not math.isfinite(t):
        raise ProtocolError("bad_header", f"time = {t!r}: expected a finite number")
    dtype = DTYPES.get(h.get("dtype"))
    if dtype is None:
        raise ProtocolError("bad_dtype", f"dtype = {h.get('dtype')!r}: expected one of {sorted(DTYPES)}")
    if h.get("shape") != [field_size]:
        raise ProtocolError("bad_shape", f"shape = {h.get('shape')!r}: expected [{field_size}]")
    expected = field_size * dtype.itemsize
    if len(payload) > expected:
        raise ProtocolError("oversized", f"payload of {len(payload)} bytes: expected {expected}")
    if len(payload) < expected or _int(h, "nbytes") != expected:
        raise ProtocolError("truncated", f"payload of {len(payload)} bytes, header nbytes {h.get('nbytes')}: "
                                         f"expected {expected}")
    if zlib.crc32(payload) != h.get("crc32"):
        raise ProtocolError("bad_checksum", "crc32 of the payload does not match the header")
    field = np.frombuffer(payload, dtype=dtype)
    if not np.isfinite(field).all():
        raise ProtocolError("bad_values", "field has NaN or Inf values")
    return Message("step", client, mu, step, float(t), field)
