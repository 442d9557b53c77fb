"""Terminal side of the host tests and the load generator: chip authorisation requests with a
valid ARQC from a card profile's TEST issuer keys, malformed frames the decoder rejects, and a
blocking framed client (`TerminalClient`). `rig.host.loadgen` drives these under load.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rig.crypto import arqc
from rig.iso8583 import messages
from rig.iso8583.framing import Tpdu, get_framing
from rig.iso8583.messages import Iso8583Error

__all__ = [
    "DEFAULT_AMOUNT",
    "DEFAULT_PROFILE",
    "MERCHANT",
    "LoadError",
    "TerminalClient",
    "chip_authorization",
    "chip_icc",
    "malformed_frames",
]

DEFAULT_PROFILE = "visa-no-cvm-under-floor"
DEFAULT_AMOUNT = 100
MERCHANT = "POSRIGLOADGEN01"
_IAD = {
    "visa-10": "06010A03A00000",
    "visa-18": "06011203A00000",
    "visa-22": "1F42" + "00" * 30,
    "mc-16": "0110A00003220000000000000000000000FF",
    "mc-20": "0114A00003220000000000000000000000FF",
    "pboc-01": "07010103A00000010A010000000000",
}


class LoadError(RuntimeError):
    """The load cannot start (bad target, profile, framing); the message names the fix."""


def chip_icc(profile: Any, amount: int, atc: int, now: datetime) -> tuple[dict[int, bytes], str]:
    """DE55 tags with a valid ARQC for the profile's first application (TEST keys); (tags, pan)."""
    from rig.profiles import issuer_keys

    keys = issuer_keys(profile)
    if not keys:
        raise LoadError(f"profile {profile.id!r} has no EMV application; pick a chip profile")
    k = keys[0]
    app = profile.applications[0]
    tags = {
        "9F02": bytes.fromhex(f"{amount:012d}"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex(app.country.rjust(4, "0")),
        "95": bytes(5),
        "5F2A": bytes.fromhex(app.currency.rjust(4, "0")),
        "9A": bytes.fromhex(now.strftime("%y%m%d")),
        "9C": b"\x00",
        "9F37": secrets.token_bytes(4),
        "82": bytes.fromhex(app.aip),
        "9F36": atc.to_bytes(2, "big"),
        "9F10": bytes.fromhex(_IAD.get(k.cvn, _IAD["visa-10"])),
    }
    icc_mk = arqc.icc_master_key(k.cvn, k.imk_ac, k.pan, k.psn)
    ac = arqc.generate_ac(k.cvn, icc_mk, tags)
    out = {int(t, 16): v for t, v in tags.items()}
    out[0x9F26] = ac
    out[0x9F27] = b"\x80"
    out[0x5F34] = bytes.fromhex(k.psn.rjust(2, "0"))
    return out, k.pan


def chip_authorization(
    profile: Any,
    *,
    stan: int,
    terminal_id: str,
    amount: int = DEFAULT_AMOUNT,
    atc: int = 1,
    now: datetime | None = None,
    builder: Any = messages.authorization,
    **fields: Any,
) -> dict[str, str]:
    """A 0100 (or `builder`'s) chip request for the profile's card with a valid ARQC (TEST)."""
    now = now or datetime.now(UTC)
    icc, pan = chip_icc(profile, amount, atc, now)
    app = profile.applications[0]
    fields.setdefault("merchant_id", MERCHANT)
    return builder(
        amount=amount,
        stan=stan,
        terminal_id=terminal_id,
        pan=pan,
        expiry=app.expiry.strftime("%y%m"),
        card_seq=app.psn.rjust(3, "0"),
        currency=app.currency.rjust(3, "0"),
        icc=icc,
        now=now,
        **fields,
    )


def _stan_template(doc: dict[str, str]) -> tuple[bytes, int, bool]:
    """(encoded request, offset of DE11, DE11 is BCD): requests are this with the STAN patched."""
    one = messages.encode({**doc, "11": "000000"})
    two = messages.encode({**doc, "11": "123456"})
    at = next(i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b)
    bcd = two[at : at + 3] == b"\x12\x34\x56"
    return one, at, bcd


def malformed_frames(rng: random.Random, template: bytes) -> bytes:
    """One payload the dialect's decoder rejects: random bytes, or a valid message mutated."""
    while True:
        kind = rng.randrange(5)
        if kind == 0:
            data = rng.randbytes(rng.randrange(1, 64))
        elif kind == 1:
            data = template[: rng.randrange(1, len(template))]
        elif kind == 2:
            data = bytearray(template)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        elif kind == 3:
            data = template[:2] + rng.randbytes(rng.randrange(8, 80))
        else:
            data = template + rng.randbytes(rng.randrange(1, 16))
        try:
            messages.decode(data)
        except Iso8583Error:
            return data


class TerminalClient:
    """Blocking terminal-side client (tests, tools): framed send/receive over TCP or TLS."""

    def __init__(
        self,
        address: tuple[str, int],
        framing: str = "len2",
        *,
        cafile: Path | str | None = None,
        timeout: float = 5.0,
    ) -> None:
        import socket

        self.framing = get_framing(framing, max_len=1 << 20)
        self.tpdu = Tpdu(1, 0) if framing == "len2-tpdu" else None
        sock = socket.create_connection(address, timeout=timeout)
        if cafile is not None:
            from rig.host.tls import client_context

            sock = client_context(cafile).wrap_socket(sock, server_hostname=address[0])
        self.sock = sock
        self.reader = self.framing.reader()
        self._frames: list[Any] = []

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (a header, a partial frame, garbage)."""
        self.sock.sendall(data)

    def send_payload(self, payload: bytes) -> None:
        """One framed payload (with a TPDU when the framing has one)."""
        self.sock.sendall(self.framing.frame(payload, self.tpdu))

    def receive(self, timeout: float | None = None) -> Any:
        """The next frame, or None when the host closed the connection (TimeoutError if slow)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self._frames:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self._frames.extend(self.reader.feed(chunk))
        return self._frames.pop(0)

    def exchange(self, doc: dict[str, str], timeout: float | None = None) -> dict[str, str] | None:
        """Send a message document, return the decoded response (None: connection closed)."""
        self.send_payload(messages.encode(doc))
        frame = self.receive(timeout)
        return None if frame is None else messages.decode(frame.payload)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> TerminalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
