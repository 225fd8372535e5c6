"""Settings of the streamed training and their semantic checks (light: no torch, no zmq, so the
pipeline can call `validate_settings` when it validates a study).

The buffer rules: a FIFO/FIRO buffer must hold a batch and one ingest chunk besides
(`capacity >= batch_size + ingest_chunk`), or the producer can fill it with rows left over while
the consumer waits for a full batch; and training must start before the buffer is full
(`watermark < capacity`).
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass


@dataclass
class Settings:
    policy: str = "reservoir"
    batch_size: int = 64
    capacity: int = 4000
    watermark: int = 500
    budget_seconds: float = 30.0
    budget_batches: int = 0  # 0: no limit
    validate_every_seconds: float = 2.0
    checkpoint_every_seconds: float = 10.0
    ingest_chunk: int = 16
    bind: str = "127.0.0.1"
    port: int = 0
    seed: int = 0

    def __post_init__(self):
        problem = buffer_problem(self.capacity, self.watermark, self.batch_size, self.ingest_chunk)
        if problem:
            raise ValueError(problem)


def buffer_problem(capacity: int, watermark: int, batch_size: int, ingest_chunk: int) -> str | None:
    """One line naming the buffer setting that cannot work, or None."""
    if not 1 <= watermark < capacity:
        return (f"surrogate.buffer.watermark = {watermark}: expected at least 1 and below "
                f"surrogate.buffer.capacity = {capacity} (training must start before the buffer is full)")
    if capacity < batch_size + ingest_chunk:
        return (f"surrogate.buffer.capacity = {capacity}: expected at least surrogate.batch_size + "
                f"surrogate.online.ingest_chunk = {batch_size} + {ingest_chunk} = {batch_size + ingest_chunk}")
    return None


def validate_settings(study: dict, source: str = "config"):
    """Semantic checks of a study's `surrogate` section (after the schema filled the defaults);
    raises rom.errors.ConfigError with one line."""
    from rom.errors import ConfigError

    s = study["surrogate"]
    b, on = s["buffer"], s["online"]
    problem = buffer_problem(b["capacity"], b["watermark"], s["batch_size"], on["ingest_chunk"])
    if problem:
        raise ConfigError(f"{source}: {problem}")
    command = on.get("client_command", "")
    if command:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"{source}: surrogate.online.client_command = {json.dumps(command)}: {exc}; "
                              f"expected a command line (shell quoting)") from None
        if not argv:
            raise ConfigError(f"{source}: surrogate.online.client_command = {json.dumps(command)}: expected a command")
    if s["enabled"]:
        from rom.hifi import capabilities as cap
        from rom.hifi.registry import ProblemLookupError, problem_class

        try:
            transient = cap.TRANSIENT in problem_class(study["problem"]).capabilities
        except ProblemLookupError:
            return  # the problem itself is refused where the study is validated
        if not transient:
            raise ConfigError(f"{source}: surrogate.enabled = true for problem.name = "
                              f"{json.dumps(study['problem'].get('name'))}: the streamed surrogate expects a transient "
                              "problem (heat)")


def settings(study: dict, policy: str, rank: int = 0) -> Settings:
    """The server settings of one online run (rank r binds port + r when a port is given)."""
    s, on = study["surrogate"], study["surrogate"]["online"]
    return Settings(policy=policy, batch_size=s["batch_size"], capacity=s["buffer"]["capacity"],
                    watermark=s["buffer"]["watermark"], budget_seconds=s["budget_seconds"],
                    budget_batches=s["budget_batches"], validate_every_seconds=s["validate_every_seconds"],
                    checkpoint_every_seconds=s["checkpoint_every_seconds"], ingest_chunk=on["ingest_chunk"],
                    bind=on["bind"], port=on["port"] + rank if on["port"] else 0, seed=s.get("seed", study["seed"]))
