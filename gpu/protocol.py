"""The wire between gpu_slot() clients and the host's GPU broker: typed messages, one JSON object a line.

Client -> broker: Acquire (one connection per slot; the connection dropping frees what it holds), Adopt
(re-attach a grant after a broker restart), Release, StatusRequest, Shutdown. Broker -> client: Granted,
Adopted, Refused (op "timeout" or "error"), StatusReport, Bye. Both sides build and read only these
classes, so a field exists on both ends or on neither.
"""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Acquire:
    """A slot request: stage, units (None: the policy's), priority, timeout (s), physical devices allowed."""

    op: ClassVar[str] = "acquire"
    stage: str
    units: int | None = None
    priority: int | None = None
    timeout: float | None = None
    devices: list[int] | None = None
    pid: int | None = None
    since: float | None = None  # wall time the wait began (kept across broker restarts)
    task_run: str | None = None
    flow_run: str | None = None


@dataclass(frozen=True)
class Granted:
    op: ClassVar[str] = "granted"
    grant_id: str
    device: int
    limit: str
    limit_id: str
    units: int
    priority: int
    waited: float
    lease_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Adopt:
    """A holder of a dead broker's grant re-attaches it to the new broker."""

    op: ClassVar[str] = "adopt"
    request: Acquire
    grant: Granted
    held: float = 0.0


@dataclass(frozen=True)
class Adopted:
    op: ClassVar[str] = "adopted"
    grant_id: str


@dataclass(frozen=True)
class Release:
    op: ClassVar[str] = "release"


@dataclass(frozen=True)
class Refused:
    """`op` is "timeout" (the wait passed its timeout) or "error" (bad request, Prefect unreachable)."""

    op: str
    message: str


@dataclass(frozen=True)
class StatusRequest:
    op: ClassVar[str] = "status"
    window: float = 3600.0


@dataclass(frozen=True)
class StatusReport:
    op: ClassVar[str] = "status_report"
    report: dict[str, Any]


@dataclass(frozen=True)
class Shutdown:
    op: ClassVar[str] = "shutdown"


@dataclass(frozen=True)
class Bye:
    op: ClassVar[str] = "bye"


Message = (
    Acquire | Granted | Adopt | Adopted | Release | Refused | StatusRequest | StatusReport | Shutdown | Bye
)
_SIMPLE: dict[str, type] = {
    cls.op: cls for cls in (Acquire, Granted, Adopted, Release, StatusRequest, StatusReport, Shutdown, Bye)
}


class ProtocolError(ValueError):
    """A line that is not one of the messages above."""


def encode(message: Message) -> bytes:
    return json.dumps({**asdict(message), "op": message.op}).encode() + b"\n"


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def decode(line: bytes | str) -> Message:
    try:
        data = json.loads(line)
        op = data.pop("op")
        if op in ("timeout", "error"):
            return Refused(op, str(data.get("message", "")))
        if op == "adopt":
            request, grant = _build(Acquire, data["request"]), _build(Granted, data["grant"])
            return Adopt(request, grant, float(data.get("held", 0.0)))
        return _build(_SIMPLE[op], data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"not a GPU broker message: {line[:200]!r} ({exc!r})") from exc


class Line:
    """A blocking message connection to the broker (the client side)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, message: Message) -> None:
        self.sock.sendall(encode(message))

    def receive(self, timeout: float | None) -> Message | None:
        """The next message, or None when the broker closed the connection."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return decode(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
