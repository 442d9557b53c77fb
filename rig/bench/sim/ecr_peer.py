"""ECR peer simulator: the terminal side of the rig's reference ECR protocol, on a pty.

    python -m rig.bench.sim.ecr_peer --link PATH [--mode MODE] [--count N]
        [--ack-timeout S] [--inter-char-timeout S] [--name NAME]

Readiness: {"port": PATH}. It answers every request of docs/ecr-protocol.md with canned terminal
behaviour (approved sales with a masked test PAN, amounts ending in 51 declined, a checked
firmware upgrade, a display driven by injected keys). MODE makes it misbehave N times (forever
without --count), then behave:
  nak-storm  NAK a good frame instead of ACKing it (each NAK counts one);
  lose-ack   withhold the ACK of a received frame, or ignore the rig's ACK of its own response
             and retransmit it (each lost ACK counts one);
  garble     send a response with one payload bit flipped (bad LRC);
  truncate   send the first half of a response and stop (rig's inter-character timeout);
  silent     ignore a received frame completely (no ACK, no answer).
At run time the request {"cmd": "simctl", "mode": M, "count": N} switches mode (omit count for
forever); its own response is sent without faults, every frame after it meets the new mode.
`TerminalEndpoint` and `TerminalModel` are reused by the placeholder DUT (`rig.bench.sim.dut`).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import select
import sys
import time
from collections import deque
from typing import Any

from drivers.ecr import EcrError, EcrMessageError, Message
from drivers.ecr import messages as msgs
from drivers.ecr.framing import (
    ACK,
    DEFAULT_MAX_PAYLOAD,
    NAK,
    NAK_KINDS,
    EventKind,
    FrameDecoder,
    FrameEvent,
    encode_frame,
)
from drivers.ecr.messages import Result
from rig.bench.sim.common import PtyLink, announce_ready, exit_on_sigterm

TEST_MASKED_PAN = "476173******0010"
"""Masked form of the Visa test PAN the canned answers use (test card, not a real account)."""


def log(text: str) -> None:
    """Diagnostics go to stderr; stdout carries only the readiness line."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


FAULT_MODES = ("normal", "nak-storm", "lose-ack", "garble", "truncate", "silent")


class Faults:
    """Which misbehaviour is active and how many times it may still happen (None: forever)."""

    def __init__(self, mode: str = "normal", count: int | None = None) -> None:
        self.mode = mode
        self.count = count

    def take(self, mode: str) -> bool:
        """True (and one fewer left) when `mode` is active and not exhausted."""
        if self.mode != mode:
            return False
        if self.count is None:
            return True
        if self.count > 0:
            self.count -= 1
            return True
        return False


class TerminalEndpoint:
    """Terminal side of the reference link on a raw file descriptor, with fault hooks."""

    def __init__(
        self,
        fd: int,
        faults: Faults | None = None,
        *,
        ack_timeout: float = 1.0,
        inter_char_timeout: float = 0.2,
        max_retransmissions: int = 3,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        duplicate_window: float = 10.0,
    ) -> None:
        self.fd = fd
        self.faults = faults or Faults()
        self.ack_timeout = ack_timeout
        self.inter_char_timeout = inter_char_timeout
        self.max_retransmissions = max_retransmissions
        self.max_payload = max_payload
        self.duplicate_window = duplicate_window
        self.decoder = FrameDecoder(max_payload)
        self.inbox: deque[Message | EcrMessageError] = deque()
        self._last: tuple[bytes, float] | None = None
        self._last_rx = 0.0

    def poll(self, timeout: float) -> list[Message | EcrMessageError]:
        """Wait up to `timeout` for input; return the messages (or decode errors) delivered."""
        if not self.inbox:
            self._pump(time.monotonic() + timeout)
        out = list(self.inbox)
        self.inbox.clear()
        return out

    def send(self, message: Message, faults: Faults | None = None) -> bool:
        """Send one message with retransmissions; True when the rig acknowledged it.

        `faults` overrides the sending-side faults (garble, truncate, ignored ACK) for this
        message only; frames received meanwhile still meet `self.faults`.
        """
        out = self.faults if faults is None else faults
        frame = encode_frame(msgs.encode(message), self.max_payload)
        for _ in range(self.max_retransmissions + 1):
            if out.take("garble"):
                i = 1 + len(frame) // 2
                self._write(frame[:i] + bytes((frame[i] ^ 0x01,)) + frame[i + 1 :])
            elif out.take("truncate"):
                self._write(frame[: max(2, len(frame) // 2)])
            else:
                self._write(frame)
            if self._await_ack(time.monotonic() + self.ack_timeout, out):
                return True
        log(f"ecr: {message.get('rsp') or message.get('cmd')} not acknowledged, given up")
        return False

    def _await_ack(self, deadline: float, faults: Faults) -> bool:
        while True:
            kinds = self._pump(deadline)
            if EventKind.NAK in kinds:
                return False
            if EventKind.ACK in kinds and not faults.take("lose-ack"):
                return True
            if time.monotonic() >= deadline:
                return False

    def _pump(self, deadline: float) -> list[EventKind]:
        wait = max(0.0, deadline - time.monotonic())
        if self.decoder.in_frame:
            wait = min(wait, max(0.0, self._last_rx + self.inter_char_timeout - time.monotonic()))
        ready, _, _ = select.select([self.fd], [], [], wait)
        data = b""
        if ready:
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                data = b""
        now = time.monotonic()
        if data:
            self._last_rx = now
            events = self.decoder.feed(data)
        elif self.decoder.in_frame and now - self._last_rx >= self.inter_char_timeout:
            events = self.decoder.timeout()
        else:
            events = []
        return [k for ev in events if (k := self._handle(ev)) is not None]

    def _handle(self, ev: FrameEvent) -> EventKind | None:
        if ev.kind in (EventKind.ACK, EventKind.NAK):
            return ev.kind
        if ev.kind in NAK_KINDS:
            log(f"ecr: NAK ({ev.kind.value}: {ev.reason})")
            self._write(bytes((NAK,)))
            return None
        if ev.kind != EventKind.FRAME:
            return None
        if self.faults.take("silent"):
            return None
        if self.faults.take("nak-storm"):
            self._write(bytes((NAK,)))
            return None
        now = time.monotonic()
        duplicate = (
            self._last is not None
            and self._last[0] == ev.payload
            and now - self._last[1] <= self.duplicate_window
        )
        self._last = (ev.payload, now)
        if not self.faults.take("lose-ack"):
            self._write(bytes((ACK,)))
        if duplicate:
            return None
        try:
            self.inbox.append(msgs.decode(ev.payload))
        except EcrMessageError as exc:
            self.inbox.append(exc)
        return None

    def _write(self, data: bytes) -> None:
        os.write(self.fd, data)


def _text(value: str, limit: int = 256) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in value)[:limit]


def error_response(exc: EcrMessageError) -> Message:
    """The answer to a payload that is not a valid request."""
    return msgs.validate(
        {"rsp": "error", "seq": 0, "result": Result.FORMAT_ERROR, "text": _text(str(exc))}
    )


class TerminalModel:
    """Canned terminal behaviour for every request; `do_<cmd>` methods return the response."""

    name = "ecr-peer"
    firmware = "posrig-peer-1.0"

    def __init__(self, name: str | None = None) -> None:
        if name:
            self.name = name
        self.started = time.monotonic()
        self.handled = 0
        self.display = "READY"
        self.stan = 0
        self.batch = 1
        self.balance = 5000
        self.journal: dict[str, dict[str, Any]] = {}
        self.params: dict[str, Any] = {}
        self.fw: dict[str, Any] | None = None

    def handle(self, msg: Message) -> Message:
        """Answer one request; unknown commands get UNKNOWN_COMMAND."""
        self.handled += 1
        method = getattr(self, "do_" + msg["cmd"], None)
        if method is None:
            return msgs.response(msg, Result.UNKNOWN_COMMAND, text="not supported by this terminal")
        try:
            return method(msg)
        except EcrError as exc:
            return msgs.response(msg, Result.SYSTEM_ERROR, text=_text(str(exc)))

    def uptime(self) -> int:
        return int(time.monotonic() - self.started)

    def do_ping(self, msg: Message) -> Message:
        return msgs.response(
            msg, Result.OK, name=self.name, firmware=self.firmware, handled=self.handled
        )

    def do_status(self, msg: Message) -> Message:
        return msgs.response(
            msg,
            Result.OK,
            name=self.name,
            firmware=self.firmware,
            state="idle" if self.fw is None else "upgrading",
            display=self.display,
            last_qr="",
            uptime_s=self.uptime(),
            printer="ok",
            handled=self.handled,
        )

    def _transaction(self, msg: Message, kind: str) -> Message:
        if msg["amount"] % 100 == 51:
            return msgs.response(msg, Result.DECLINED, text="declined by issuer (amount rule 51)")
        self.stan = self.stan % 999_999 + 1
        self.journal[msg["reference"]] = {"kind": kind, "amount": msg["amount"], "stan": self.stan}
        fields = {k: msg[k] for k in ("amount", "currency", "reference")}
        return msgs.response(
            msg,
            Result.OK,
            masked_pan=TEST_MASKED_PAN,
            auth_code=f"{self.stan:06d}",
            stan=self.stan,
            scheme="VISA",
            **fields,
            **({"entry_mode": "chip"} if kind in ("sale", "preauth") else {}),
        )

    def do_sale(self, msg: Message) -> Message:
        return self._transaction(msg, "sale")

    def do_refund(self, msg: Message) -> Message:
        return self._transaction(msg, "refund")

    def do_preauth(self, msg: Message) -> Message:
        return self._transaction(msg, "preauth")

    def do_void(self, msg: Message) -> Message:
        original = self.journal.pop(msg["original_reference"], None)
        if original is None:
            return msgs.response(msg, Result.INVALID_TRANSACTION, text="no such transaction")
        return msgs.response(
            msg,
            Result.OK,
            stan=original["stan"],
            reference=msg["reference"],
            amount=original["amount"],
        )

    def do_balance(self, msg: Message) -> Message:
        return msgs.response(
            msg, Result.OK, masked_pan=TEST_MASKED_PAN, balance=self.balance, currency="978"
        )

    def do_topup(self, msg: Message) -> Message:
        self.balance += msg["amount"]
        self.stan = self.stan % 999_999 + 1
        return msgs.response(
            msg,
            Result.OK,
            masked_pan=TEST_MASKED_PAN,
            balance=self.balance,
            currency=msg["currency"],
            stan=self.stan,
            reference=msg["reference"],
        )

    def do_settlement(self, msg: Message) -> Message:
        total = sum(
            t["amount"] * (-1 if t["kind"] == "refund" else 1)
            for t in self.journal.values()
            if t["kind"] != "preauth"
        )
        count, batch = len(self.journal), self.batch
        self.journal.clear()
        self.batch += 1
        return msgs.response(
            msg, Result.OK, count=count, total=max(0, total), currency="978", batch=batch
        )

    def do_reprint(self, msg: Message) -> Message:
        return msgs.response(msg, Result.OK)

    def do_fw_begin(self, msg: Message) -> Message:
        self.fw = {"begin": msg, "image": bytearray(), "next": 0}
        return msgs.response(msg, Result.OK, chunk_size=msg["chunk_size"])

    def do_fw_chunk(self, msg: Message) -> Message:
        if self.fw is None:
            return msgs.response(msg, Result.FW_NOT_STARTED, text="send fw_begin first")
        if msg["index"] != self.fw["next"]:
            return msgs.response(
                msg,
                Result.FW_SEQUENCE,
                index=self.fw["next"],
                received=len(self.fw["image"]),
                text=f"expected chunk {self.fw['next']}",
            )
        data = base64.b64decode(msg["data"])
        if len(data) != msg["length"] or msgs.crc32_hex(data) != msg["crc32"]:
            return msgs.response(
                msg,
                Result.FW_CHECKSUM,
                index=msg["index"],
                received=len(self.fw["image"]),
                text="chunk length or CRC-32",
            )
        self.fw["image"] += data
        self.fw["next"] += 1
        return msgs.response(msg, Result.OK, index=msg["index"], received=len(self.fw["image"]))

    def do_fw_end(self, msg: Message) -> Message:
        if self.fw is None:
            return msgs.response(msg, Result.FW_NOT_STARTED, text="send fw_begin first")
        begin, image = self.fw["begin"], bytes(self.fw["image"])
        self.fw = None
        if len(image) != begin["size"] or msgs.crc32_hex(image) != begin["crc32"]:
            return msgs.response(
                msg,
                Result.FW_CHECKSUM,
                size=len(image),
                text="image size or CRC-32 differs from fw_begin",
            )
        self.firmware = begin["version"]
        return msgs.response(msg, Result.OK, version=begin["version"], size=len(image))

    def do_fw_abort(self, msg: Message) -> Message:
        self.fw = None
        return msgs.response(msg, Result.OK)

    def do_param_download(self, msg: Message) -> Message:
        self.params.update(msg.get("params", {}))
        return msgs.response(msg, Result.OK, count=len(msg.get("params", {})))

    def do_reboot(self, msg: Message) -> Message:
        self.display = "READY"
        return msgs.response(msg, Result.OK)

    def do_key_inject(self, msg: Message) -> Message:
        for key in msg["keys"]:
            if key in ("CLEAR", "CANCEL"):
                self.display = "READY"
            elif key == "ENTER":
                self.display = "OK"
            elif key.isdigit():
                shown = "" if not self.display.isdigit() else self.display
                self.display = (shown + key)[-32:]
        return msgs.response(msg, Result.OK, display=self.display)

    def do_display_read(self, msg: Message) -> Message:
        return msgs.response(msg, Result.OK, display=self.display)

    def do_display_shot(self, msg: Message) -> Message:
        from PIL import Image, ImageDraw

        image = Image.new("1", (128, 32), 1)
        ImageDraw.Draw(image).text((2, 10), self.display[:20], fill=0)
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
        png = base64.b64encode(buf.getvalue()).decode("ascii")
        return msgs.response(msg, Result.OK, png=png, width=128, height=32)


def serve(endpoint: TerminalEndpoint, model: TerminalModel, idle: float = 0.2) -> None:
    """Answer requests until terminated; `simctl` switches faults after its response."""
    while True:
        for item in endpoint.poll(idle):
            if isinstance(item, EcrMessageError):
                endpoint.send(error_response(item))
                continue
            if "cmd" not in item:
                continue
            if item["cmd"] == "simctl":
                extra = {"count": item["count"]} if "count" in item else {}
                endpoint.faults = Faults(item["mode"], item.get("count"))
                endpoint.send(msgs.response(item, Result.OK, mode=item["mode"], **extra), Faults())
                continue
            endpoint.send(model.handle(item))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--link", required=True, help="symlink path of the pty the rig opens")
    parser.add_argument("--mode", default="normal", choices=FAULT_MODES)
    parser.add_argument("--count", type=int, default=None, help="bad answers before behaving")
    parser.add_argument("--ack-timeout", type=float, default=1.0)
    parser.add_argument("--inter-char-timeout", type=float, default=0.2)
    parser.add_argument("--name", default="ecr-peer")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    link = PtyLink(args.link)
    try:
        endpoint = TerminalEndpoint(
            link.master,
            Faults(args.mode, args.count),
            ack_timeout=args.ack_timeout,
            inter_char_timeout=args.inter_char_timeout,
        )
        announce_ready(port=str(link.link))
        serve(endpoint, TerminalModel(args.name))
    finally:
        link.close()


if __name__ == "__main__":
    main()
