"""PC/SC card reader driver on pyscard: connect, transmit APDUs, and clear errors for card events.

Talks to pcscd only (a lab reader, or the vpcd virtual reader in simulation). `transmit`
follows ISO 7816-4 transport rules a terminal applies itself: GET RESPONSE while the card
answers 61xx, and one re-issue with Le=xx on 6Cxx. Every APDU is recorded in the transcript;
the per-APDU cost is a few dict lookups and two buffer appends.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from smartcard import scard

from drivers.iso7816 import describe_command, describe_sw
from rig.evidence import Direction, Transcript, null_transcript

PROTOCOLS = {
    "T0": scard.SCARD_PROTOCOL_T0,
    "T1": scard.SCARD_PROTOCOL_T1,
    "any": scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
}
PROTOCOL_NAMES = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}
MAX_RESPONSE_CHAIN = 64
REMOVAL_GRACE = 0.6
"""Seconds to let pcscd notice a pulled card after a failed exchange (it polls every 0.4 s)."""

_TX = Direction.TX
_RX = Direction.RX
_EVENT = Direction.EVENT
_OK = scard.SCARD_S_SUCCESS
_NO_CARD = {scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD}
_READER_GONE = {scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_UNKNOWN_READER}
_SERVICE_GONE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED}
_NOT_TRANSACTED = {scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_F_COMM_ERROR}


PIN_INS = frozenset({0x20, 0x21, 0x24, 0x2C})
"""VERIFY, VERIFY (odd), CHANGE REFERENCE DATA, RESET RETRY COUNTER: their data is a PIN block,
so the transcript keeps only the length of the command."""


class PcscError(Exception):
    """Any PC/SC failure; `reader` names the reader, `code` is the PC/SC result when one exists."""

    def __init__(self, message: str, *, reader: str | None = None, code: int | None = None):
        super().__init__(message)
        self.reader = reader
        self.code = code


class NoReaderError(PcscError):
    """The named reader is not listed by pcscd; the message lists the readers present."""


class ReaderGoneError(NoReaderError):
    """The reader vanished while in use (unplugged, or pcscd lost its driver)."""


class NoCardError(PcscError):
    """The reader has no card."""


class CardRemovedError(PcscError):
    """The card left the reader during or since the connection."""


class CardResetError(PcscError):
    """Another application or a power cycle reset the card: reconnect."""


class PcscTimeout(PcscError):
    """Nothing happened in time: no card inserted, or the card stayed mute."""


class ApduError(PcscError, ValueError):
    """A command APDU the driver refuses to send (wrong size)."""


def _hex(code: int) -> str:
    return f"0x{code & 0xFFFFFFFF:08X}"


def _message(code: int) -> str:
    try:
        return scard.SCardGetErrorMessage(code).strip()
    except Exception:
        return "unknown PC/SC error"


def _establish() -> int:
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv in _SERVICE_GONE:
        raise PcscError(
            "pcscd is not running: start it (rig.bench.pcscd.ensure_pcscd, "
            "or `systemctl start pcscd`)",
            code=rv,
        )
    if rv != _OK:
        raise PcscError(f"cannot open a PC/SC context: {_message(rv)} ({_hex(rv)})", code=rv)
    return ctx


def list_readers() -> list[str]:
    """Names of the readers pcscd lists now (empty list when none)."""
    ctx = _establish()
    try:
        return _readers(ctx)
    finally:
        scard.SCardReleaseContext(ctx)


def _readers(ctx: int) -> list[str]:
    rv, readers = scard.SCardListReaders(ctx, [])
    if rv == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if rv != _OK:
        raise PcscError(f"cannot list readers: {_message(rv)} ({_hex(rv)})", code=rv)
    return list(readers)


def _with_le(apdu: bytes, le: int) -> bytes:
    """The same short command with its Le set to `le` (appended for cases 1 and 3)."""
    n = len(apdu)
    if n == 5 or (n > 5 and n == 6 + apdu[4]):
        return apdu[:-1] + bytes((le,))
    return apdu + bytes((le,))


@runtime_checkable
class CardReader(Protocol):
    """A contact card reader as the rig uses it (PC/SC on a bench, vpcd in simulation)."""

    name: str

    @property
    def atr(self) -> bytes: ...

    def list_readers(self) -> list[str]: ...

    def card_present(self) -> bool: ...

    def wait_for_card(self, timeout: float) -> bytes: ...

    def wait_for_removal(self, timeout: float) -> None: ...

    def connect(self, protocol: str = "any", *, reset: bool = False) -> bytes: ...

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...

    def disconnect(self) -> None: ...


class PcscReader:
    """One PC/SC reader; `transmit` returns (response data, SW1SW2 as an int)."""

    def __init__(self, reader: str, *, transcript: Transcript | None = None) -> None:
        self.name = reader
        self._transcript = transcript if transcript is not None else null_transcript("pcsc")
        self._record = self._transcript.record if self._transcript.enabled else None
        self._ctx: int | None = _establish()
        self._hcard: int | None = None
        self._protocol = 0
        self._atr = b""
        present = _readers(self._ctx)
        if reader not in present:
            self.close()
            raise NoReaderError(
                f"no PC/SC reader named {reader!r}; readers present: {present or 'none'}",
                reader=reader,
            )

    def list_readers(self) -> list[str]:
        """Names of the readers pcscd lists now."""
        if self._ctx is None:
            raise PcscError(f"reader {self.name!r} is closed", reader=self.name)
        return _readers(self._ctx)

    # -- card presence -------------------------------------------------------------------

    def _state(self, current: int, timeout_ms: int) -> tuple[int, int, bytes]:
        """SCardGetStatusChange for this reader: (result, event state, ATR)."""
        if self._ctx is None:
            raise PcscError(f"reader {self.name!r} is closed", reader=self.name)
        rv, states = scard.SCardGetStatusChange(self._ctx, timeout_ms, [(self.name, current)])
        if rv in _SERVICE_GONE:
            raise PcscError("pcscd stopped", reader=self.name, code=rv)
        if rv in _READER_GONE:
            raise self._gone(rv)
        if rv not in (_OK, scard.SCARD_E_TIMEOUT):
            raise PcscError(
                f"reader {self.name!r}: status query failed: {_message(rv)} ({_hex(rv)})",
                reader=self.name,
                code=rv,
            )
        _, event, atr = states[0]
        if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
            raise self._gone(rv)
        return rv, event, bytes(atr)

    def _gone(self, code: int) -> ReaderGoneError:
        try:
            present = _readers(self._ctx) if self._ctx is not None else []
        except PcscError:
            present = []
        return ReaderGoneError(
            f"reader {self.name!r} is gone; readers present: {present or 'none'}",
            reader=self.name,
            code=code,
        )

    def card_present(self) -> bool:
        """True when the reader reports a card."""
        _, event, _ = self._state(scard.SCARD_STATE_UNAWARE, 0)
        return bool(event & scard.SCARD_STATE_PRESENT)

    def _wait(self, present: bool, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        _, event, atr = self._state(scard.SCARD_STATE_UNAWARE, 0)
        while bool(event & scard.SCARD_STATE_PRESENT) != present:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, event, atr = self._state(event, max(1, int(left * 1000)))
        else:
            return atr
        wanted = "a card" if present else "the card to be removed"
        raise PcscTimeout(
            f"reader {self.name!r}: waited {timeout:g} s for {wanted}", reader=self.name
        )

    def wait_for_card(self, timeout: float) -> bytes:
        """Block until a card is in the reader; its ATR. PcscTimeout after `timeout` seconds."""
        return self._wait(True, timeout)

    def wait_for_removal(self, timeout: float) -> None:
        """Block until the reader is empty. PcscTimeout after `timeout` seconds."""
        self._wait(False, timeout)

    # -- connection ----------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        """ATR of the connected card (empty before `connect`)."""
        return self._atr

    @property
    def protocol(self) -> str:
        """Active protocol, "T=0" or "T=1" ("" before `connect`)."""
        return PROTOCOL_NAMES.get(self._protocol, "")

    def connect(self, protocol: str = "any", *, reset: bool = False) -> bytes:
        """Connect (shared) to the card with protocol "T0", "T1" or "any"; returns the ATR.

        A powered card keeps the protocol it was first given; `reset=True` cold-resets it so
        another protocol can be chosen.
        """
        mask = PROTOCOLS.get(protocol)
        if mask is None:
            raise PcscError(
                f"unknown protocol {protocol!r}: use one of {sorted(PROTOCOLS)}", reader=self.name
            )
        if self._ctx is None:
            raise PcscError(f"reader {self.name!r} is closed", reader=self.name)
        if self._hcard is not None:
            self.disconnect()
        shared = scard.SCARD_SHARE_SHARED
        rv, hcard, active = scard.SCardConnect(
            self._ctx, self.name, shared, PROTOCOLS["any"] if reset else mask
        )
        if rv == _OK and reset:
            rv, active = scard.SCardReconnect(hcard, shared, mask, scard.SCARD_UNPOWER_CARD)
            if rv != _OK:
                scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        if rv != _OK:
            err = self._connect_error(rv, protocol)
            self._transcript.record(_EVENT, None, {"event": "connect"}, error=str(err))
            raise err
        rv, _, _, _, atr = scard.SCardStatus(hcard)
        if rv != _OK:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
            err = self._connect_error(rv, protocol)
            self._transcript.record(_EVENT, None, {"event": "connect"}, error=str(err))
            raise err
        self._hcard, self._protocol, self._atr = hcard, active, bytes(atr)
        self._transcript.record(
            _EVENT,
            self._atr,
            {"event": "connect", "reader": self.name, "protocol": self.protocol},
        )
        return self._atr

    def _connect_error(self, rv: int, protocol: str) -> PcscError:
        if rv in _NO_CARD:
            return NoCardError(
                f"no card in reader {self.name!r}: insert one "
                "(card simulator: CardSimulatorControl.insert())",
                reader=self.name,
                code=rv,
            )
        if rv in _READER_GONE:
            return self._gone(rv)
        if rv == scard.SCARD_E_PROTO_MISMATCH:
            return PcscError(
                f"card in reader {self.name!r}: protocol {protocol} not available (the card does "
                "not offer it, or is powered in another protocol: connect(..., reset=True))",
                reader=self.name,
                code=rv,
            )
        if rv in (scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_W_UNPOWERED_CARD):
            return PcscTimeout(
                f"card in reader {self.name!r} gives no ATR: reseat or replace it",
                reader=self.name,
                code=rv,
            )
        if rv == scard.SCARD_E_SHARING_VIOLATION:
            return PcscError(
                f"reader {self.name!r} is held exclusively by another application",
                reader=self.name,
                code=rv,
            )
        if rv in _SERVICE_GONE:
            return PcscError("pcscd stopped", reader=self.name, code=rv)
        return PcscError(
            f"cannot connect to the card in {self.name!r}: {_message(rv)} ({_hex(rv)})",
            reader=self.name,
            code=rv,
        )

    def disconnect(self) -> None:
        """Release the card, leaving it powered as it is."""
        hcard, self._hcard = self._hcard, None
        if hcard is None:
            return
        scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        self._transcript.record(_EVENT, None, {"event": "disconnect", "reader": self.name})

    def close(self) -> None:
        """Disconnect and release the PC/SC context."""
        self.disconnect()
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            scard.SCardReleaseContext(ctx)

    def __enter__(self) -> PcscReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- APDUs ---------------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send a command APDU; (data, SW) after GET RESPONSE on 61xx and re-issue on 6Cxx."""
        data, sw = self._exchange(apdu)
        sw1 = sw >> 8
        if sw1 == 0x6C:
            data, sw = self._exchange(_with_le(apdu, sw & 0xFF))
            sw1 = sw >> 8
        if sw1 != 0x61:
            return data, sw
        parts = [data]
        get_response = bytes((apdu[0] & 0x03, 0xC0, 0x00, 0x00))
        for _ in range(MAX_RESPONSE_CHAIN):
            chunk, sw = self._exchange(get_response + bytes((sw & 0xFF,)))
            if sw >> 8 == 0x6C:
                chunk, sw = self._exchange(get_response + bytes((sw & 0xFF,)))
            parts.append(chunk)
            if sw >> 8 != 0x61:
                return b"".join(parts), sw
        raise PcscError(
            f"card in {self.name!r} still answers 61xx after {MAX_RESPONSE_CHAIN} GET RESPONSE",
            reader=self.name,
        )

    def _exchange(self, apdu: bytes) -> tuple[bytes, int]:
        """One SCardTransmit, recorded both ways; failures raise the matching PcscError."""
        hcard = self._hcard
        n = len(apdu)
        if hcard is None or n < 4 or n > 261:
            self._refuse(apdu)
        record = self._record
        if record is not None:
            record(_TX, apdu, describe_command(apdu), sensitive=apdu[1] in PIN_INS)
        rv, resp = scard.SCardTransmit(hcard, self._protocol, list(apdu))
        if rv or len(resp) < 2:
            self._failed(apdu, rv, resp)
        raw = bytes(resp)
        sw = (raw[-2] << 8) | raw[-1]
        if record is not None:
            record(_RX, raw, describe_sw(sw))
        return raw[:-2], sw

    def _refuse(self, apdu: bytes) -> None:
        if self._hcard is None:
            raise PcscError(
                f"reader {self.name!r}: not connected to a card, call connect() first",
                reader=self.name,
            )
        raise ApduError(
            f"command APDU of {len(apdu)} bytes: a short APDU has 4 to 261 bytes "
            f"({bytes(apdu).hex().upper()})",
            reader=self.name,
        )

    def _failed(self, apdu: bytes, rv: int, resp: list[int]) -> None:
        err = self._transmit_error(apdu, rv, resp)
        self._transcript.record(_RX, bytes(resp) or None, None, error=str(err))
        if isinstance(err, (CardRemovedError, ReaderGoneError, CardResetError)):
            self.disconnect()
        raise err

    def _transmit_error(self, apdu: bytes, rv: int, resp: list[int]) -> PcscError:
        what = describe_command(apdu)["ins"]
        if rv in _NO_CARD:
            return CardRemovedError(
                f"card removed from {self.name!r} (during {what})", reader=self.name, code=rv
            )
        if rv == scard.SCARD_W_RESET_CARD:
            return CardResetError(
                f"card in {self.name!r} was reset (before {what}): connect again",
                reader=self.name,
                code=rv,
            )
        if rv in _READER_GONE:
            return self._gone(rv)
        if rv in _SERVICE_GONE:
            return PcscError(f"pcscd stopped (during {what})", reader=self.name, code=rv)
        if rv == scard.SCARD_E_TIMEOUT:
            return PcscTimeout(f"{what} to {self.name!r} timed out", reader=self.name, code=rv)
        if rv == _OK or rv in _NOT_TRANSACTED:
            if self._card_left():
                return CardRemovedError(
                    f"card removed from {self.name!r} during {what}", reader=self.name, code=rv
                )
            got = f"{len(resp)} response bytes" if rv == _OK else _message(rv)
            return PcscTimeout(
                f"card in {self.name!r} did not answer {what} ({got}): mute card, "
                "the reader gave up waiting",
                reader=self.name,
                code=rv,
            )
        return PcscError(
            f"{what} to {self.name!r} failed: {_message(rv)} ({_hex(rv)})",
            reader=self.name,
            code=rv,
        )

    def _card_left(self) -> bool:
        """After a failed exchange: did the card leave (pcscd needs up to one poll to see it)?"""
        deadline = time.monotonic() + REMOVAL_GRACE
        try:
            _, event, _ = self._state(scard.SCARD_STATE_UNAWARE, 0)
            while event & scard.SCARD_STATE_PRESENT:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                rv, event, _ = self._state(event, max(1, int(left * 1000)))
                if rv == scard.SCARD_E_TIMEOUT:
                    return False
        except ReaderGoneError:
            return True
        return True
