"""The EMV card as a `CardApplication`: a card profile served APDU by APDU, pure logic, no I/O
(the card host puts it behind vpcd; `CardState` persists ATC, PIN tries and blocking).

| command | CLA INS P1 P2 | data | answer |
| --- | --- | --- | --- |
| SELECT | 00 A4 04 00/02 | DF name, full or partial (02: next one) | FCI; 6283 if blocked |
| GET PROCESSING OPTIONS | 80 A8 00 00 | 83 L PDOL data | 80 AIP AFL / 77 { 82 94 } |
| READ RECORD | 00 B2 rec SFI<<3+4 | - | 70 record / directory / log |
| GET DATA | 80 CA tag | - | 9F36 9F13 9F17 9F4F 9F14 9F23, PUT DATA tags |
| VERIFY | 00 20 00 80/88 | format-2 PIN block / RSA enciphered block | 9000, 63Cx, 6983 |
| GET CHALLENGE | 00 84 00 00 | - | 8 random bytes |
| INTERNAL AUTHENTICATE | 00 88 00 00 | DDOL data | 80 SDAD / 77 { 9F4B } |
| GENERATE AC | 80 AE type(+10 CDA) 00 | CDOL1 / CDOL2 data | 80 CID ATC AC IAD / 77 {...} |
| EXTERNAL AUTHENTICATE | 00 82 00 00 | ARPC ARC / ARPC CSU [prop] | 9000, 6300 |
| PIN CHANGE/UNBLOCK | 84 24 00 00/01/02 | [enciphered PIN block] MAC | 9000, 6988 |
| APPLICATION BLOCK / UNBLOCK | 84 1E / 84 18 00 00 | MAC | 9000, 6988 |
| CARD BLOCK | 84 16 00 00 | MAC | 9000 (SELECT then 6A81) |
| PUT DATA | 04/84 DA tag | value MAC | 9000, 6988 |

Script commands need a GENERATE AC earlier in the session (their MAC covers its cryptogram);
ATC is incremented at GPO; every change of `CardState` is saved at once.

Card risk management at the first GENERATE AC (never more than the terminal asks for): AAC when
the application is blocked, the profile forces a decline or the terminal asks for an AAC; ARQC
when asked for one; a TC request gives a TC only when the consecutive offline count is below the
lower limit (9F14, 0 = never offline) and nothing calls for going online (force_online, last
online transaction not completed, issuer authentication failed last time, PIN try limit
exceeded, offline PIN failed now), else ARQC. Second GENERATE AC (only after an ARQC): AAC when
asked, blocked, forced to decline or issuer authentication failed (EXTERNAL AUTHENTICATE or tag
91 in CDOL2); with ARC Y3/Z3 (unable to go online) a TC only below the upper limit (9F23);
otherwise TC. An online completion sets the last online ATC and clears the offline count.

Response format: the `response_format` argument, else the application's `response_format`, else 2
(77) for Mastercard CVNs and CDA cards, 1 (80) otherwise; contactless answers are always 77, CDA
answers always 77 with 9F4B last (the transaction data hash covers 9F27 9F36 9F10 in that order,
Book 2 §6.6.1). Other status words: 6985 command out of sequence, 6A86 bad P1 P2, 6700 bad length,
6A80 malformed PIN block, 6A81 method not supported / card blocked, 6A88 no such data, 6D00 / 6E00
unknown INS / CLA, 6F00 internal error (never expected). IAD, CVR and secure messaging:
`rig.card.emv_commands`; the card risk management functions: `rig.card.emv_risk`.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from rig.card import emv_commands as ec
from rig.card import emv_risk as cr
from rig.card.application import ApduFormatError, Command, parse_command, sw_bytes
from rig.card.emv_contactless import ppse_entries, qvsdc_decision, qvsdc_response
from rig.card.emv_state import AppState, CardState, Session, log_record
from rig.crypto.arqc import generate_ac, icc_master_key
from rig.crypto.oda import dda_dynamic_data, sign_cda, sign_dynamic_data, transaction_data_hash
from rig.crypto.primitives import CryptoError
from rig.emv.dol import DolError, split_dol_data
from rig.emv.tlv import TlvError, decode, encode, tag_to_hex
from rig.profiles.model import Application, CardProfile, record_template

__all__ = ["DEFAULT_ATR", "EmvAppError", "EmvCardApplication"]

DEFAULT_ATR = bytes.fromhex("3B8A8001504F5352494720454D5660")
"""ATR for a profile without one (contactless only): T=0 and T=1, historical "POSRIG EMV"."""


class EmvAppError(ValueError):
    """The EMV card cannot serve this profile as asked; the message names the fix."""


class EmvCardApplication:
    """An EMV card serving one profile (implements `CardApplication`)."""

    def __init__(
        self,
        profile: CardProfile,
        *,
        state: CardState | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        interface: str = "contact",
        response_format: int | None = None,
    ) -> None:
        if profile.kind != "emv" or not profile.applications:
            raise EmvAppError(f"profile {profile.id}: kind {profile.kind} has no EMV application")
        if interface not in ("contact", "contactless"):
            raise EmvAppError(f"interface {interface!r}: use contact or contactless")
        if interface not in profile.interfaces:
            raise EmvAppError(
                f"profile {profile.id} offers {profile.interfaces}, not {interface}; "
                "serve it on one of those"
            )
        if response_format not in (None, 1, 2):
            raise EmvAppError(f"response_format {response_format}: use 1 (80) or 2 (77)")
        if state is not None and state.profile_id != profile.id:
            raise EmvAppError(f"state belongs to {state.profile_id}, not {profile.id}")
        self.profile = profile
        self.state = state if state is not None else CardState.fresh(profile)
        self.interface = interface
        self.atr = bytes.fromhex(profile.atr) if profile.atr else DEFAULT_ATR
        self._random = random_bytes
        self._format = response_format
        self.contactless = interface == "contactless"
        cl = profile.contactless
        if self.contactless and cl is not None:
            aid = cl.aid or profile.applications[0].aid
            self.apps = [a for a in profile.applications if a.aid == aid]
        else:
            self.apps = list(profile.applications)
        self._keys: dict[str, tuple[bytes, bytes, bytes]] = {}
        self.selected: Application | None = None
        self.directory = False
        self.session = Session()
        self.challenge: bytes | None = None
        self._cursor: tuple[bytes, int] | None = None
        self._handlers: dict[tuple[int, int], Callable[[Command, bytes], bytes]] = {
            (0x00, 0xA4): self._select,
            (0x80, 0xA8): self._gpo,
            (0x00, 0xB2): self._read_record,
            (0x80, 0xCA): self._get_data,
            (0x00, 0x20): self._verify,
            (0x00, 0x84): self._get_challenge,
            (0x00, 0x88): self._internal_authenticate,
            (0x80, 0xAE): self._generate_ac,
            (0x00, 0x82): self._external_authenticate,
            (0x84, 0x24): self._script,
            (0x84, 0x1E): self._script,
            (0x84, 0x18): self._script,
            (0x84, 0x16): self._script,
            (0x04, 0xDA): self._script,
            (0x84, 0xDA): self._script,
        }

    # ---- CardApplication --------------------------------------------------------------------

    def reset(self) -> None:
        """Deselect and forget the transaction; persistent counters stay."""
        self.selected = None
        self.directory = False
        self.session = Session()
        self.challenge = None
        self._cursor = None

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with data + SW; never raises."""
        try:
            cmd = parse_command(bytes(apdu))
        except ApduFormatError:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        handler = self._handlers.get((cmd.cla, cmd.ins))
        if handler is None:
            known = any(ins == cmd.ins for _, ins in self._handlers)
            return sw_bytes(ec.SW_CLA if known or cmd.cla not in (0x00, 0x80, 0x84) else ec.SW_INS)
        try:
            return handler(cmd, bytes(apdu))
        except (CryptoError, DolError, TlvError):
            return sw_bytes(ec.SW_WRONG_DATA)
        except Exception:
            return sw_bytes(ec.SW_INTERNAL)

    # ---- helpers ----------------------------------------------------------------------------

    @property
    def app_state(self) -> AppState:
        assert self.selected is not None
        return self.state.app(self.selected.aid)

    def keys(self, app: Application) -> tuple[bytes, bytes, bytes]:
        """ICC master keys (AC, SMI, SMC) derived from the profile's TEST issuer master keys."""
        if app.aid not in self._keys:
            c = app.crypto
            self._keys[app.aid] = tuple(  # type: ignore[assignment]
                icc_master_key(c.cvn, bytes.fromhex(k), app.pan, app.psn)
                for k in (c.imk_ac, c.imk_smi, c.imk_smc)
            )
        return self._keys[app.aid]

    def _response_format(self, app: Application) -> int:
        if self._format is not None:
            return self._format
        if app.response_format is not None:
            return app.response_format
        return 2 if app.crypto.cvn.startswith("mc-") or app.crypto.oda == "cda" else 1

    def _limit(self, tag: str, default: int) -> int:
        raw = self.app_state.data.get(tag)
        return int(raw, 16) if raw else default

    def _pin(self) -> str | None:
        return self.state.pin or self.profile.risk.pin

    def _fast_path(self) -> bool:
        cl = self.profile.contactless
        return self.contactless and cl is not None and cl.gpo_returns_cryptogram

    def _aip(self, app: Application) -> bytes:
        cl = self.profile.contactless
        return bytes.fromhex(cl.aip if self.contactless and cl else app.aip)

    def _save(self) -> None:
        self.state.save()

    # ---- selection ----------------------------------------------------------------------------

    def _select(self, cmd: Command, _apdu: bytes) -> bytes:
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x02):
            return sw_bytes(ec.SW_P1P2)
        if self.state.card_blocked:
            return sw_bytes(ec.SW_FUNCTION)
        cursor = self._cursor
        self.reset()
        self._cursor = cursor
        name = cmd.data
        if name == ec.PSE_NAME and not self.contactless:
            self.directory = True
            return ec.pse_fci() + sw_bytes(ec.SW_OK)
        if name == ec.PPSE_NAME and self.contactless and self.profile.contactless:
            entries = ppse_entries(self.apps[0], self.profile.contactless)
            self.directory = True
            return ec.ppse_fci(entries) + sw_bytes(ec.SW_OK)
        matches = [a for a in self.apps if name and bytes.fromhex(a.aid).startswith(name)]
        last = self._cursor
        start = last[1] + 1 if cmd.p2 == 0x02 and last and last[0] == name else 0
        if start >= len(matches):
            return sw_bytes(ec.SW_NOT_FOUND)
        app = matches[start]
        self._cursor = (name, start)
        self.selected = app
        cl = self.profile.contactless
        pdol = cl.pdol if self.contactless and cl else app.pdol
        sw = ec.SW_SELECTED_BLOCKED if self.state.app(app.aid).blocked else ec.SW_OK
        return ec.app_fci(app, pdol) + sw_bytes(sw)

    # ---- GPO, records, data -------------------------------------------------------------------

    def _gpo(self, cmd: Command, _apdu: bytes) -> bytes:
        if cmd.p1 or cmd.p2:
            return sw_bytes(ec.SW_P1P2)
        app = self.selected
        if app is None or self.session.gpo_done:
            return sw_bytes(ec.SW_CONDITIONS)
        cl = self.profile.contactless
        pdol = cl.pdol if self.contactless and cl else app.pdol
        try:
            tlvs = decode(cmd.data, recurse=False, allow_padding=False)
        except TlvError:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        if len(tlvs) != 1 or tlvs[0].tag != 0x83:
            return sw_bytes(ec.SW_WRONG_DATA)
        try:
            values = split_dol_data(bytes.fromhex(pdol), tlvs[0].value)
        except DolError:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        st = self.app_state
        if st.atc >= 0xFFFF:
            return sw_bytes(ec.SW_CONDITIONS)
        st.atc += 1
        s = self.session
        s.gpo_done, s.pdol_data, s.terminal = True, tlvs[0].value, dict(values)
        s.last_online_not_completed = st.online_pending
        s.issuer_auth_failed_last = st.issuer_auth_failed
        s.script_failed_last, st.script_failed = st.script_failed, False
        if self._fast_path():
            return self._qvsdc(app, values)
        self._save()
        aip, afl = self._aip(app), bytes.fromhex(cl.afl if self.contactless and cl else app.afl)
        if self.contactless or self._response_format(app) == 2:
            return encode(0x77, encode(0x82, aip) + encode(0x94, afl)) + sw_bytes(ec.SW_OK)
        return encode(0x80, aip + afl) + sw_bytes(ec.SW_OK)

    def _qvsdc(self, app: Application, values: dict[int, bytes]) -> bytes:
        cl = self.profile.contactless
        assert cl is not None
        st = self.app_state
        decline = st.blocked or self.profile.risk.force_decline
        cid = qvsdc_decision(
            values.get(0x9F66, b""), decline=decline, offline_ok=self._offline_ok()
        )
        self.session.first_ac = cid
        self.session.generated = 1
        ac, iad = self._cryptogram(app, cid)
        self.session.first_cryptogram = ac
        if cid == ec.ARQC:
            self.session.arqc = ac
            st.online_pending = True
        elif cid == ec.TC:
            st.offline_count += 1
        self.app_state.add_log(log_record(self.session.terminal, self.app_state.atc, cid))
        self._save()
        return qvsdc_response(cl, cid, st.atc, ac, iad) + sw_bytes(ec.SW_OK)

    def _read_record(self, cmd: Command, _apdu: bytes) -> bytes:
        if cmd.p1 == 0 or cmd.p2 & 0x07 != 0x04:
            return sw_bytes(ec.SW_P1P2)
        sfi = cmd.p2 >> 3
        if self.directory and not self.contactless:
            if sfi != ec.PSE_SFI:
                return sw_bytes(ec.SW_NOT_FOUND)
            if cmd.p1 > len(self.apps):
                return sw_bytes(ec.SW_RECORD_NOT_FOUND)
            return encode(0x70, ec.app_entry(self.apps[cmd.p1 - 1])) + sw_bytes(ec.SW_OK)
        app = self.selected
        if app is None:
            return sw_bytes(ec.SW_CONDITIONS)
        if sfi == ec.LOG_SFI:
            log = self.app_state.log
            if cmd.p1 > len(log):
                return sw_bytes(ec.SW_RECORD_NOT_FOUND)
            return bytes.fromhex(log[cmd.p1 - 1]) + sw_bytes(ec.SW_OK)
        cl = self.profile.contactless
        records = cl.records if self.contactless and cl else app.records
        if sfi not in records:
            return sw_bytes(ec.SW_NOT_FOUND)
        tags = records[sfi].get(cmd.p1)
        if tags is None:
            return sw_bytes(ec.SW_RECORD_NOT_FOUND)
        return record_template(tags) + sw_bytes(ec.SW_OK)

    def _get_data(self, cmd: Command, _apdu: bytes) -> bytes:
        if self.selected is None:
            return sw_bytes(ec.SW_CONDITIONS)
        tag = (cmd.p1 << 8) | cmd.p2
        st, risk = self.app_state, self.profile.risk
        values = {
            0x9F36: st.atc.to_bytes(2, "big"),
            0x9F13: st.last_online_atc.to_bytes(2, "big"),
            0x9F17: bytes((self.state.pin_try_counter,)),
            0x9F4F: ec.LOG_FORMAT,
            0x9F14: bytes((risk.lower_consecutive_offline_limit,)),
            0x9F23: bytes((risk.upper_consecutive_offline_limit,)),
        }
        hex_tag = tag_to_hex(tag) if cmd.p1 else f"{cmd.p2:02X}"
        if hex_tag in st.data:
            value = bytes.fromhex(st.data[hex_tag])
        elif tag in values:
            value = values[tag]
        else:
            return sw_bytes(ec.SW_REF_NOT_FOUND)
        return encode(tag if cmd.p1 else cmd.p2, value) + sw_bytes(ec.SW_OK)

    # ---- cardholder verification and authentication -------------------------------------------

    def _verify(self, cmd: Command, _apdu: bytes) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 not in (0x80, 0x88):
            return sw_bytes(ec.SW_P1P2)
        app = self.selected
        if app is None:
            return sw_bytes(ec.SW_CONDITIONS)
        expected = self._pin()
        if expected is None:
            return sw_bytes(ec.SW_REF_NOT_FOUND)
        if self.state.pin_try_counter == 0:
            return sw_bytes(ec.SW_PIN_BLOCKED)
        if cmd.p2 == 0x80:
            if len(cmd.data) != 8:
                return sw_bytes(ec.SW_WRONG_LENGTH)
            pin = ec.parse_format2_pin_block(cmd.data)
        else:
            key = app.crypto.icc_private_key
            if key is None:
                return sw_bytes(ec.SW_FUNCTION)
            challenge, self.challenge = self.challenge, None
            if challenge is None:
                return sw_bytes(ec.SW_CONDITIONS)
            pair = key.key_pair()
            if len(cmd.data) != pair.public.size:
                return sw_bytes(ec.SW_WRONG_LENGTH)
            pin = ec.recover_enciphered_pin(
                pair.public.modulus, pair.private_exponent, cmd.data, challenge
            )
            self.session.enciphered = True
        if pin is None:
            return sw_bytes(ec.SW_WRONG_DATA)
        s = self.session
        s.pin_performed = True
        if hmac.compare_digest(pin.encode(), expected.encode()):
            self.state.pin_try_counter = self.profile.risk.pin_try_limit
            s.pin_ok, s.pin_failed = True, False
            self._save()
            return sw_bytes(ec.SW_OK)
        self.state.pin_try_counter -= 1
        s.pin_ok, s.pin_failed = False, True
        self._save()
        return sw_bytes(0x63C0 | self.state.pin_try_counter)

    def _get_challenge(self, cmd: Command, _apdu: bytes) -> bytes:
        if cmd.p1 or cmd.p2:
            return sw_bytes(ec.SW_P1P2)
        if cmd.data:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        self.challenge = self._random_n(8)
        return self.challenge + sw_bytes(ec.SW_OK)

    def _internal_authenticate(self, cmd: Command, _apdu: bytes) -> bytes:
        if cmd.p1 or cmd.p2:
            return sw_bytes(ec.SW_P1P2)
        app = self.selected
        if app is None:
            return sw_bytes(ec.SW_CONDITIONS)
        key = app.crypto.icc_private_key
        if key is None or app.crypto.oda not in ("dda", "cda"):
            return sw_bytes(ec.SW_FUNCTION)
        if not cmd.data:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        sdad = sign_dynamic_data(key.key_pair(), dda_dynamic_data(self._random_n(8)), cmd.data)
        self.session.dda = True
        if self._response_format(app) == 2:
            return encode(0x77, encode(0x9F4B, sdad)) + sw_bytes(ec.SW_OK)
        return encode(0x80, sdad) + sw_bytes(ec.SW_OK)

    def _external_authenticate(self, cmd: Command, _apdu: bytes) -> bytes:
        if cmd.p1 or cmd.p2:
            return sw_bytes(ec.SW_P1P2)
        s = self.session
        if self.selected is None or s.arqc is None or s.generated != 1 or s.issuer_auth is not None:
            return sw_bytes(ec.SW_CONDITIONS)
        if not 8 <= len(cmd.data) <= 16:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        s.issuer_auth = self._arpc_ok(cmd.data)
        return sw_bytes(ec.SW_OK if s.issuer_auth else ec.SW_ISSUER_AUTH_FAILED)

    def _arpc_ok(self, data: bytes) -> bool:
        app, s = self.selected, self.session
        assert app is not None and s.arqc is not None
        atc = self.app_state.atc.to_bytes(2, "big")
        un = s.terminal.get(0x9F37, bytes(4))
        return ec.arpc_ok(app.crypto.cvn, self.keys(app)[0], s.arqc, atc, un, data)

    # ---- GENERATE AC --------------------------------------------------------------------------

    def _offline_ok(self) -> bool:
        lower = self._limit("9F14", self.profile.risk.lower_consecutive_offline_limit)
        pin_tries = self.state.pin_try_counter
        return cr.offline_ok(self.session, self.app_state, self.profile.risk, pin_tries, lower)

    def _facts(self, app: Application) -> ec.CvrFacts:
        risk = self.profile.risk
        lower = self._limit("9F14", risk.lower_consecutive_offline_limit)
        upper = self._limit("9F23", risk.upper_consecutive_offline_limit)
        pin_tries = self.state.pin_try_counter
        return cr.cvr_facts(app, self.session, self.app_state, pin_tries, lower, upper)

    def _cryptogram(self, app: Application, cid: int) -> tuple[bytes, bytes]:
        """The AC and the IAD it covers, for the AC type the card decided on."""
        iad = ec.build_iad(app.crypto.cvn, self._facts(app))
        tags = ec.ac_tags(
            app.crypto.cvn, self.session.terminal, self._aip(app), self.app_state.atc, iad
        )
        return generate_ac(app.crypto.cvn, self.keys(app)[0], tags), iad

    def _generate_ac(self, cmd: Command, _apdu: bytes) -> bytes:
        kind, cda = cmd.p1 & 0xC0, bool(cmd.p1 & 0x10)
        if kind == 0xC0 or cmd.p1 & 0x2F or cmd.p2:
            return sw_bytes(ec.SW_P1P2)
        app, s = self.selected, self.session
        if app is None or not s.gpo_done or self._fast_path():
            return sw_bytes(ec.SW_CONDITIONS)
        first = s.generated == 0
        if not first and (s.generated != 1 or s.first_ac != ec.ARQC):
            return sw_bytes(ec.SW_CONDITIONS)
        try:
            values = split_dol_data(bytes.fromhex(app.cdol1 if first else app.cdol2), cmd.data)
        except DolError:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        s.terminal.update(values)
        cid = self._decide_first(kind) if first else self._decide_second(kind, values)
        if first:
            s.first_ac, s.cdol1_data = cid, cmd.data
        else:
            s.second_ac = cid
        cda = cda and cid != ec.AAC and app.crypto.oda == "cda"
        if cda:
            s.cda_first, s.cda_second = (True, s.cda_second) if first else (s.cda_first, True)
        s.generated += 1
        ac, iad = self._cryptogram(app, cid)
        st = self.app_state
        if first:
            s.first_cryptogram = ac
            if cid == ec.ARQC:
                s.arqc = ac
                st.online_pending = True
            elif cid == ec.TC:
                st.offline_count += 1
            self.app_state.add_log(log_record(self.session.terminal, self.app_state.atc, cid))
        self._save()
        atc = st.atc.to_bytes(2, "big")
        if cda:
            objects = encode(0x9F27, bytes((cid,))) + encode(0x9F36, atc) + encode(0x9F10, iad)
            cdol2 = b"" if first else cmd.data
            tdhc = transaction_data_hash(s.pdol_data, s.cdol1_data, cdol2, objects)
            un = s.terminal.get(0x9F37, bytes(4))
            key = app.crypto.icc_private_key
            assert key is not None
            sdad = sign_cda(key.key_pair(), self._random_n(8), cid, ac, tdhc, un)
            return encode(0x77, objects + encode(0x9F4B, sdad)) + sw_bytes(ec.SW_OK)
        if self._response_format(app) == 2 or self.contactless:
            body = encode(0x9F27, bytes((cid,))) + encode(0x9F36, atc)
            body += encode(0x9F26, ac) + encode(0x9F10, iad)
            return encode(0x77, body) + sw_bytes(ec.SW_OK)
        return encode(0x80, bytes((cid,)) + atc + ac + iad) + sw_bytes(ec.SW_OK)

    def _decide_first(self, kind: int) -> int:
        return cr.decide_first(kind, self.app_state, self.profile.risk, self._offline_ok)

    def _decide_second(self, kind: int, values: dict[int, bytes]) -> int:
        risk = self.profile.risk

        def upper() -> int:
            return self._limit("9F23", risk.upper_consecutive_offline_limit)

        s, st = self.session, self.app_state
        return cr.decide_second(kind, values, s, st, risk, upper, self._arpc_ok)

    # ---- issuer scripts -----------------------------------------------------------------------

    def _script(self, cmd: Command, apdu: bytes) -> bytes:
        app, s = self.selected, self.session
        if app is None or s.first_cryptogram is None:
            return sw_bytes(ec.SW_CONDITIONS)
        if not cmd.data:
            return sw_bytes(ec.SW_WRONG_LENGTH)
        cvn = app.crypto.cvn
        mk_smi = self.keys(app)[1]
        st = self.app_state
        atc = st.atc.to_bytes(2, "big")
        ac = ec.script_ac(cvn, s.first_cryptogram, s.scripts)
        s.scripts += 1
        data = ec.check_script_mac(cvn, mk_smi, apdu[:5], atc, ac, cmd.data)
        if data is None:
            st.script_failed = True
            self._save()
            return sw_bytes(ec.SW_SM_INCORRECT)
        sw = ec.apply_script(
            self.state,
            st,
            self.profile.risk.pin_try_limit,
            cmd,
            data,
            self.keys(app),
            cvn,
            (atc, ac),
        )
        if sw == ec.SW_OK:
            st.script_counter = (st.script_counter + 1) & 0xFFFF
        else:
            st.script_failed = True
        self._save()
        return sw_bytes(sw)

    def _random_n(self, n: int) -> bytes:
        value = bytes(self._random(n))
        if len(value) != n:
            raise RuntimeError(f"random source gave {len(value)} bytes, not {n}")
        return value
