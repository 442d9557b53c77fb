"""ECR links: the protocol every ECR (cash register) link driver implements, and its errors.

A link carries messages (plain dicts, see `drivers.ecr.messages`) between the rig, acting as the
cash register, and the terminal. The rig's reference protocol is `drivers.ecr.posrig_link`
(framing in `drivers.ecr.framing`, message set in `drivers.ecr.messages`, spec in
`docs/ecr-protocol.md`); a vendor protocol is another module here implementing `EcrLink`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]
"""One ECR message: a request has "cmd" and "seq", a response "rsp", "seq" and "result"."""


class EcrError(Exception):
    """An ECR exchange failed; the message names the port and what to check."""


class EcrTimeout(EcrError):
    """The terminal did not acknowledge or answer in time."""


class EcrNakLimit(EcrError):
    """The terminal refused a frame (NAK) on every allowed retransmission."""


class EcrFrameError(EcrError):
    """A frame could not be built or parsed; `offset` is the byte offset of the fault."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(f"ECR frame error at byte {offset}: {reason}")
        self.reason = reason
        self.offset = offset


class EcrMessageError(EcrError):
    """A message is malformed or breaks the spec; `field` names the culprit, `offset` the byte."""

    def __init__(self, reason: str, field: str = "", offset: int | None = None) -> None:
        where = f"field {field!r}" if field else "message"
        at = f" (byte {offset})" if offset is not None else ""
        super().__init__(f"ECR message error in {where}{at}: {reason}")
        self.reason = reason
        self.field = field
        self.offset = offset


class EcrPortGone(EcrError):
    """The serial port could not be opened or vanished mid-exchange (unplugged, peer died)."""

    def __init__(self, port: str, detail: str) -> None:
        super().__init__(
            f"ECR port {port} is gone ({detail}); check the cable, the device path in the bench "
            "file and that the terminal (or its simulator) is powered and running"
        )
        self.port = port


@runtime_checkable
class EcrLink(Protocol):
    """A message link to a terminal's ECR port."""

    def open(self) -> None:
        """Open the port; raises EcrPortGone when it cannot be opened."""
        ...

    def close(self) -> None:
        """Release the port; safe to call twice."""
        ...

    def request(self, message: Message, timeout: float | None = None) -> Message:
        """Send a request and return the terminal's response to it."""
        ...

    def send(self, message: Message) -> None:
        """Send one message and wait until the terminal has acknowledged it."""
        ...

    def receive(self, timeout: float | None = None) -> Message:
        """Return the next message from the terminal; raises EcrTimeout when none arrives."""
        ...


__all__ = [
    "EcrError",
    "EcrFrameError",
    "EcrLink",
    "EcrMessageError",
    "EcrNakLimit",
    "EcrPortGone",
    "EcrTimeout",
    "Message",
]
