"""Wire format of the simulation -> server stream: a ZeroMQ multipart message of three frames,
a JSON header (UTF-8), the field as raw little-endian bytes, and an HMAC-SHA256 tag of both under
the run's secret. No pickle crosses the socket.

Header keys: v (protocol version), kind ("step" | "bye"), client (int id given by the launcher),
mu (list of numbers), step (int), time (number), shape ([field size]), dtype ("float32" |
"float64"), nbytes (int). A "bye" carries `steps`, the number of steps sent (the client's own count,
which may include steps refused here: the server decides completion from its ledger, not from it).

`decode` authenticates first (sizes, then the tag, before any parsing: a sender without the secret
never reaches the JSON parser), then checks every field against `Expect` (strict JSON types:
booleans are not integers; bounded nesting depth and number lengths; mu inside the parameter box,
the step inside the horizon and its time equal to step x dt within TIME_SLACK, values finite after
the cast to the training dtype). Anything else raises
ProtocolError with a short reason used as a counter name; decode raises nothing else.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = 2
DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
MAC_BYTES = 32  # HMAC-SHA256
KEY_BYTES = 32
MAX_DEPTH = 2  # a header is an object holding lists: {"mu": [...], "shape": [...]}
MAX_INT_DIGITS = 19  # anything longer cannot be a client id, step or size (int64)
TIME_SLACK = 1e-6  # relative to the horizon: a solver summing dt accumulates rounding in its time
MU_SLACK = 1e-9  # relative to the width of the box: the design's scaling rounds
# The MSE squares each value: a value whose square is not finite in float32 poisons the loss.
VALUE_LIMIT = float(np.sqrt(np.finfo(np.float32).max))

# Every reason a message can be dropped for (the server's counters are named after these).
REASONS = ("bad_frames", "oversized", "unauthenticated", "too_deep", "bad_number", "bad_header", "bad_mu",
           "bad_step", "bad_steps", "bad_time", "bad_dtype", "bad_shape", "truncated", "bad_values",
           "unexpected")


class ProtocolError(ValueError):
    """A malformed, foreign or unauthenticated message; `reason` is the counter it is booked under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Expect:
    """What the server accepts: the study's field size, parameter box (d, 2), final time and
    last step index."""

    field_size: int
    bounds: np.ndarray
    horizon: float
    max_step: int

    @property
    def dt(self) -> float:
        """The time step: step k is at time k * dt."""
        return self.horizon / self.max_step if self.max_step else 0.0

    @property
    def n_params(self) -> int:
        return len(self.bounds)

    @property
    def header_bytes(self) -> int:
        """Largest header: fixed keys plus at most 32 characters per parameter value."""
        return 512 + 32 * self.n_params

    @property
    def payload_bytes(self) -> int:
        return self.field_size * max(d.itemsize for d in DTYPES.values())

    @property
    def frame_bytes(self) -> int:
        """Largest frame of a valid message (the socket's ZMQ_MAXMSGSIZE)."""
        return max(self.header_bytes, self.payload_bytes, MAC_BYTES)

    @property
    def message_bytes(self) -> int:
        return self.header_bytes + self.payload_bytes + MAC_BYTES


@dataclass
class Message:
    kind: str
    client: int
    mu: np.ndarray
    step: int = -1
    time: float = 0.0
    field: np.ndarray | None = None
    steps: int = 0  # for "bye": how many steps the client sent


# -- the secret -------------------------------------------------------------------------------
def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key(path: str | Path, key: bytes) -> Path:
    """Write the run's secret (hex) to a file only its owner can read (created 0600, never wider)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a stale key of a killed run
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return path


def read_key(path: str | Path) -> bytes:
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"stream key file {path}: cannot read it ({exc.strerror}); expected the file the "
                         f"server wrote") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"stream key file {path}: mode {stat.S_IMODE(mode):04o}; expected 0600 (owner only)")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"stream key file {path}: expected {2 * KEY_BYTES} hex digits")
    return key


def sign(key: bytes, header: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 of the header length, header and payload (the length fixes the frame boundary)."""
    mac = hmac.new(key, len(header).to_bytes(8, "little"), hashlib.sha256)
    mac.update(header)
    mac.update(payload)
    return mac.digest()


# -- encoding ---------------------------------------------------------------------------------
def _message(key: bytes, header: dict, payload: bytes) -> list[bytes]:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return [raw, payload, sign(key, raw, payload)]


def encode_step(client: int, mu, step: int, time: float, field: np.ndarray, *, key: bytes) -> list[bytes]:
    field = np.ascontiguousarray(field)
    if field.dtype.name not in DTYPES:
        field = field.astype(np.float32)
    payload = field.astype(DTYPES[field.dtype.name], copy=False).tobytes()
    header = {"v": VERSION, "kind": "step", "client": int(client), "mu": [float(m) for m in np.ravel(mu)],
              "step": int(step), "time": float(time), "shape": list(field.shape), "dtype": field.dtype.name,
              "nbytes": len(payload)}
    return _message(key, header, payload)


def encode_bye(client: int, mu, steps: int, *, key: bytes) -> list[bytes]:
    header = {"v": VERSION, "kind": "bye", "client": int(client), "mu": [float(m) for m in np.ravel(mu)],
              "steps": int(steps)}
    return _message(key, header, b"")


# -- decoding ---------------------------------------------------------------------------------
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _depth_ok(raw: bytes) -> bool:
    """Bracket nesting never deeper than MAX_DEPTH and never closed before opened (brackets inside
    strings count too: no valid header has any), checked before the recursive JSON parser runs."""
    depth = 0
    for b in raw.translate(None, _NOT_BRACKETS):  # the brackets alone: a handful for a valid header
        depth += 1 if b in b"[{" else -1
        if not 0 <= depth <= MAX_DEPTH:
            return False
    return True


def _int_literal(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError("bad_number", f"integer of {len(s)} digits")
    return int(s)


def _no_constant(s: str):
    raise ProtocolError("bad_number", f"{s} is not a number")


def _is_int(v) -> bool:
    return type(v) is int  # bool is a subclass of int: True is not a step


def _is_number(v) -> bool:
    return type(v) in (int, float)


def _int(h: dict, key: str, reason: str, lo: int, hi: int) -> int:
    v = h.get(key)
    if not _is_int(v) or not lo <= v <= hi:
        raise ProtocolError(reason, f"{key} = {v!r}: expected an integer in {lo}..{hi}")
    return v


def decode(frames, expect: Expect, *, key: bytes) -> Message:
    """Authenticate, parse and validate one multipart message. Raises ProtocolError only."""
    try:
        return _decode(frames, expect, key)
    except ProtocolError:
        raise
    except Exception as exc:  # a gap in the checks below must drop a message, not stop the server
        raise ProtocolError("unexpected", f"{type(exc).__name__}") from None


def _decode(frames, expect: Expect, key: bytes) -> Message:
    if len(frames) != 3:
        raise ProtocolError("bad_frames", f"{len(frames)} frames: expected 3 (header, payload, tag)")
    raw, payload, tag = (bytes(f) for f in frames)
    if len(raw) > expect.header_bytes:
        raise ProtocolError("oversized", f"header of {len(raw)} bytes: expected at most {expect.header_bytes}")
    if len(payload) > expect.payload_bytes:
        raise ProtocolError("oversized", f"payload of {len(payload)} bytes: expected at most {expect.payload_bytes}")
    if len(tag) != MAC_BYTES or not hmac.compare_digest(tag, sign(key, raw, payload)):
        raise ProtocolError("unauthenticated", "tag does not match the run's secret")
    if not _depth_ok(raw):
        raise ProtocolError("too_deep", f"header nested deeper than {MAX_DEPTH}")
    try:
        h = json.loads(raw.decode("utf-8"), parse_int=_int_literal, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("bad_header", "header is not UTF-8 JSON") from None
    if not isinstance(h, dict) or not _is_int(h.get("v")) or h["v"] != VERSION:
        raise ProtocolError("bad_header", f"expected a JSON object with v = {VERSION}")
    kind = h.get("kind")
    client = _int(h, "client", "bad_header", 0, 2 ** 62)
    mu = h.get("mu")
    if not isinstance(mu, list) or len(mu) != expect.n_params or not all(_is_number(m) for m in mu):
        raise ProtocolError("bad_header", f"mu = {mu!r}: expected {expect.n_params} numbers")
    lo, hi = expect.bounds[:, 0], expect.bounds[:, 1]
    slack = MU_SLACK * (hi - lo)
    # Python compares ints of any size with floats exactly: no overflow before the range check
    if not all(a - s <= m <= b + s for m, a, b, s in zip(mu, lo, hi, slack)):
        raise ProtocolError("bad_mu", f"mu = {mu}: expected inside the parameter box {expect.bounds.tolist()}")
    mu = np.asarray(mu, dtype=float)
    if kind == "bye":
        return Message("bye", client, mu, steps=_int(h, "steps", "bad_steps", 0, 2 ** 62))
    if kind != "step":
        raise ProtocolError("bad_header", f"kind = {kind!r}: expected 'step' or 'bye'")
    step = _int(h, "step", "bad_step", 0, expect.max_step)
    t = h.get("time")
    slack = TIME_SLACK * expect.horizon
    if not _is_number(t) or not -slack <= t <= expect.horizon + slack:
        raise ProtocolError("bad_time", f"time = {t!r}: expected a number in [0, {expect.horizon}]")
    if abs(t - step * expect.dt) > slack:
        raise ProtocolError("bad_time", f"time = {t!r} at step {step}: expected {step} x dt = {step * expect.dt}")
    dtype = DTYPES.get(h.get("dtype")) if isinstance(h.get("dtype"), str) else None
    if dtype is None:
        raise ProtocolError("bad_dtype", f"dtype = {h.get('dtype')!r}: expected one of {sorted(DTYPES)}")
    shape = h.get("shape")
    if not isinstance(shape, list) or len(shape) != 1 or not _is_int(shape[0]) or shape[0] != expect.field_size:
        raise ProtocolError("bad_shape", f"shape = {shape!r}: expected [{expect.field_size}]")
    expected = expect.field_size * dtype.itemsize
    if len(payload) > expected:
        raise ProtocolError("oversized", f"payload of {len(payload)} bytes: expected {expected}")
    nbytes = h.get("nbytes")
    if len(payload) < expected or not _is_int(nbytes) or nbytes != expected:
        raise ProtocolError("truncated", f"payload of {len(payload)} bytes, header nbytes {nbytes!r}: "
                                         f"expected {expected}")
    field = np.frombuffer(payload, dtype=dtype)
    # NaN fails every comparison; values within the limit in float64 cast to float32 without overflow
    ok = float(np.abs(field).max(initial=0.0)) <= VALUE_LIMIT
    if ok and dtype != np.float32:
        ok = float(np.abs(field.astype(np.float32)).max(initial=0.0)) <= VALUE_LIMIT  # what the optimizer sees
    if not ok:
        raise ProtocolError("bad_values", f"field has values that are not finite in float32 or above "
                                          f"{VALUE_LIMIT:.3g} in magnitude")
    return Message("step", client, mu, step, float(t), field)
