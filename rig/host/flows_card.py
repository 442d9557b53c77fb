"""Card flows of the issuer: card lookup, expiry, magstripe service code / CVV, online PIN,
ARQC / ARPC, open-to-buy, and reversals. Called by `rig.host.issuer`; crypto stays in rig.crypto.
"""

from __future__ import annotations

import hmac
import re
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rig.crypto import pinblock
from rig.crypto.ac_engine import Alg3Key, CardAcEngine
from rig.crypto.dukpt import aes_working_key, tdes_working_keys
from rig.crypto.mac import mac_alg3
from rig.crypto.primitives import CryptoError, tdes_ecb_decrypt
from rig.emv.tlv import tag_to_hex
from rig.iso8583.messages import Iso8583Error, de55_decode

if TYPE_CHECKING:
    from rig.host.issuer import CardRef, Issuer, Txn

__all__ = [
    "CSU_APPROVED",
    "CSU_DECLINED",
    "CVV_OFFSET",
    "cvv",
    "financial",
    "find_card",
    "reversal",
]

CVV_OFFSET = 5
"""CVV position in track 2 discretionary data: after PVKI (1) and PVV (4), the Visa layout."""
CSU_APPROVED = bytes.fromhex("00800000")
"""Card status update for ARPC method 2: byte 2 bit 8 = issuer approves (EMV CCD)."""
CSU_DECLINED = bytes(4)

_SWIPE_MODES = ("02", "90")
_CHIP_MODES = ("05", "07")


# ---- card lookup -------------------------------------------------------------------------------


def pan_from(req: Any, txn: Txn | None = None) -> str | None:
    """PAN from DE2, else track 2 (DE35), else tag 5A of DE55."""
    pan = req.get("2")
    if pan:
        return pan
    track = req.get("35")
    if track:
        return track.partition("D")[0] or None
    if "55" in req:
        try:
            tag = (txn.icc() if txn is not None else icc_tags(req["55"])).get("5A")
        except Iso8583Error:
            return None
        if tag:
            return tag.hex().upper().rstrip("F") or None
    return None


def find_card(issuer: Issuer, txn: Txn) -> CardRef | None:
    """Look the card up by PAN; remembers it on the transaction (None when absent/unknown)."""
    pan = pan_from(txn.request, txn)
    txn.pan = pan
    if pan is None:
        return None
    txn.card = issuer.by_pan.get(pan)
    return txn.card


# ---- checks ------------------------------------------------------------------------------------


def _yymm_past(yymm: str, now: datetime) -> bool:
    return (2000 + int(yymm[:2]), int(yymm[2:])) < (now.year, now.month)


_EXPIRY: dict[date, tuple[str, tuple[int, int]]] = {}
"""Application expiry date -> (YYMM, (2000 + YY, MM)) as `_yymm_past` reads it."""


def _app_expiry(expiry: date) -> tuple[str, tuple[int, int]]:
    got = _EXPIRY.get(expiry)
    if got is None:
        if len(_EXPIRY) >= 4096:
            _EXPIRY.clear()
        yy = expiry.year % 100
        got = _EXPIRY[expiry] = (f"{yy:02d}{expiry.month:02d}", (2000 + yy, expiry.month))
    return got


def card_expiry(ref: CardRef) -> str:
    """The card's expiry YYMM from the issuer's record (profile)."""
    if ref.app is not None:
        expiry = ref.app.expiry
        if type(expiry) is date:
            return _app_expiry(expiry)[0]
        return expiry.strftime("%y%m")
    return ref.profile.magstripe.track2.partition("=")[2][:4]


def card_service_code(ref: CardRef) -> str:
    if ref.profile.magstripe is not None and ref.profile.magstripe.pan == ref.pan:
        return ref.profile.magstripe.service_code
    return ref.app.service_code if ref.app is not None else "000"


def check_expiry(issuer: Issuer, txn: Txn, ref: CardRef) -> str | None:
    app = ref.app
    if app is not None and type(app.expiry) is date:
        record, record_ym = _app_expiry(app.expiry)
    else:
        record, record_ym = card_expiry(ref), None
    req = txn.request
    given = req.get("14")
    track = req.get("35", "")
    if not given and "D" in track:
        given = track.partition("D")[2][:4]
    if given and (len(given) != 4 or not given.isdecimal() or not 1 <= int(given[2:]) <= 12):
        txn.note(f"expiry {given!r} is not YYMM")
        return "30"
    if given and given != record:
        txn.note("expiry differs from the issuer's record")
        return "54"
    now = issuer.time_of(txn)
    past = record_ym < (now.year, now.month) if record_ym is not None else _yymm_past(record, now)
    if past:
        txn.note(f"card expired (YYMM {record})")
        return "54"
    return None


def cvv(cvk: bytes, pan: str, expiry: str, service_code: str) -> str:
    """Visa/Mastercard CVV: MAC algorithm 3 over PAN||YYMM||SC zero-padded to 32 digits,
    decimalised (digits first, then A-F less 10), first 3 digits."""
    data = (pan + expiry + service_code).ljust(32, "0")[:32]
    raw = mac_alg3(cvk, bytes.fromhex(data), 1).hex().upper()
    digits = [c for c in raw if c.isdecimal()] + [
        str(int(c, 16) - 10) for c in raw if not c.isdecimal()
    ]
    return "".join(digits[:3])


def check_track(issuer: Issuer, txn: Txn, ref: CardRef) -> str | None:
    """Magstripe checks on DE35: service code, chip card swiped without fallback, CVV."""
    track = txn.request.get("35")
    if not track:
        return None
    _, _, rest = track.partition("D")
    if len(rest) < 7:
        txn.note("track 2 too short for expiry and service code")
        return "30"
    expiry, sc, disc = rest[:4], rest[4:7], rest[7:]
    if sc != card_service_code(ref):
        txn.note(f"service code {sc} differs from the card record")
        return "05"
    mode = txn.request.get("22", "")[:2]
    if mode in _SWIPE_MODES and sc[0] in "26":
        txn.note(f"chip card (service code {sc}) swiped without fallback (entry mode {mode})")
        return "57"
    if sc[2] == "3" and txn.request.get("3", "")[:2] != "01":
        txn.note(f"service code {sc}: ATM only")
        return "57"
    cvk = issuer.key("cvk")
    if cvk is None:
        txn.note("CVV not checked (no cvk in the key store)")
        return None
    given = disc[CVV_OFFSET : CVV_OFFSET + 3]
    if not hmac.compare_digest(given, cvv(cvk, ref.pan, expiry, sc)):
        txn.note("CVV mismatch")
        return "05"
    txn.note("CVV ok")
    return None


def _pin_key_and_block(issuer: Issuer, txn: Txn) -> tuple[str, bytes, bytes] | str:
    """('tdes'|'aes', key, encrypted block) or an RC when the PIN cannot be deciphered."""
    req = txn.request
    block = bytes.fromhex(req["52"])
    if len(block) not in (8, 16):
        raise ValueError(f"DE52 is {len(block)} bytes, not 8 (or 16 for format 4)")
    tid = req.get("41", "")
    if len(block) != 8 and (len(req.get("53", "")) != 24):
        txn.note("DE52 of 16 bytes is the AES format 4 block; it needs a 12-byte AES KSN in DE53")
        return "30"
    if "53" not in req:
        key = issuer.key(f"tpk:{tid}")
        if key is None:
            txn.note(f"PIN block but no tpk:{tid} in the key store")
            return "96"
        return "tdes", key, block
    ksn = bytes.fromhex(req["53"])
    if len(ksn) == 10:
        bdk = issuer.key("bdk:tdes")
        if bdk is None:
            txn.note("TDES DUKPT PIN but no bdk:tdes in the key store")
            return "96"
        return "tdes", tdes_working_keys(bdk, ksn)["pin"], block
    if len(ksn) == 12:
        bdk = issuer.key("bdk:aes")
        if bdk is None:
            txn.note("AES DUKPT PIN but no bdk:aes in the key store")
            return "96"
        if len(block) != 16 or len(ksn) != 12:
            txn.note("AES DUKPT PIN: DE52 must be the 16-byte format 4 block, DE53 the 12-byte KSN")
            return "30"
        key_type = {16: "AES128", 24: "AES192", 32: "AES256"}.get(len(bdk), "AES128")
        return "aes", aes_working_key(bdk, ksn, "pin", key_type), block
    txn.note(f"DE53 of {len(ksn)} bytes is neither a TDES (10) nor an AES (12) KSN")
    return "30"


def check_pin(issuer: Issuer, txn: Txn, ref: CardRef) -> str | None:
    """Online PIN against the card's test PIN, counting tries (55, then 75 at the limit)."""
    if "52" not in txn.request:
        return None
    acct = issuer.account(ref.pan)
    if acct.pin_tries_left <= 0:
        txn.note("PIN try limit exceeded")
        return "75"
    try:
        got = _pin_key_and_block(issuer, txn)
    except ValueError as exc:
        txn.note(f"PIN block / KSN unusable: {exc}")
        return "30"
    if isinstance(got, str):
        return got
    algo, key, block = got
    try:
        if algo == "aes":
            pin = pinblock.decrypt_pin(4, block, ref.pan, key)
        else:
            clear = tdes_ecb_decrypt(key, block)
            pin = pinblock.decode(clear[0] >> 4, clear, ref.pan)
    except CryptoError as exc:
        txn.note(f"PIN block does not decipher (wrong key?): {exc}")
        return "55"
    want = ref.profile.risk.pin or issuer_default_pin()
    if hmac.compare_digest(pin, want):
        acct.pin_tries_left = acct.pin_try_limit
        txn.note(f"PIN ok ({'AES DUKPT' if algo == 'aes' else 'TDES'})")
        return None
    acct.pin_tries_left -= 1
    if acct.pin_tries_left <= 0:
        txn.note("wrong PIN; PIN try limit now exceeded")
        return "75"
    txn.note(f"wrong PIN; {acct.pin_tries_left} tries left")
    return "55"


def issuer_default_pin() -> str:
    from rig.host.issuer import DEFAULT_PIN

    return DEFAULT_PIN


_tag_hex = lru_cache(maxsize=512)(tag_to_hex)


def icc_tags(de55: str) -> dict[str, bytes]:
    """DE55 as hex tag -> value (top level); Iso8583Error when it is not BER-TLV."""
    fast = _icc_fast(de55)
    if fast is not None:
        return fast
    return {_tag_hex(t): v for t, v in de55_decode(de55).items()}


def _icc_fast(de55: str) -> dict[str, bytes] | None:
    """The plain case of `de55_decode` (no padding, tags <= 4 bytes, lengths 81/82/83 at most);
    None sends anything else to the core decoder, which reports errors."""
    try:
        data = bytes.fromhex(de55)
    except (ValueError, TypeError):
        return None
    known = _LAYOUTS.get(len(data))
    if known:
        for pattern, tags in known:
            found = pattern.fullmatch(data)
            if found is not None:
                return dict(zip(tags, found.groups(), strict=False))
    return _icc_scan(data)


_Layout = tuple["re.Pattern[bytes]", tuple[str, ...]]
_LAYOUTS: dict[int, list[_Layout]] = {}
"""Tag layouts seen twice, by DE55 length: a regex of the fixed tag and length bytes whose
groups are the values. Parsing depends only on those bytes, so a full match parses the same."""
_SEEN: set[tuple[bytes, ...]] = set()
_MAX_SEEN = 1024
_MAX_PER_LENGTH = 4


def _icc_scan(data: bytes) -> dict[str, bytes] | None:
    """The TLV walk of `_icc_fast`; a layout met a second time is learnt for the regex path."""
    out: dict[str, bytes] = {}
    heads: list[bytes] = []
    layout: list[tuple[str, int]] = []
    i, n = 0, len(data)
    while i < n:
        start = i
        first = data[i]
        if first == 0x00 or first == 0xFF:
            return None
        i += 1
        if first & 0x1F == 0x1F:
            while i < n and data[i] & 0x80:
                i += 1
            i += 1
            if i > n or i - start > 4:
                return None
        if i >= n:
            return None
        tag = data[start:i].hex().upper()
        length = data[i]
        i += 1
        if length & 0x80:
            size = length & 0x7F
            if size == 0 or size > 3 or i + size > n:
                return None
            length = int.from_bytes(data[i : i + size], "big")
            i += size
        end = i + length
        if end > n:
            return None
        out[tag] = data[i:end]
        heads.append(data[start:i])
        layout.append((tag, length))
        i = end
    if heads:
        _learn(n, tuple(heads), layout)
    return out


def _learn(n: int, heads: tuple[bytes, ...], layout: list[tuple[str, int]]) -> None:
    """Compile the regex of a layout (header bytes + value sizes) the second time it is met."""
    if heads not in _SEEN:
        if len(_SEEN) >= _MAX_SEEN:
            _SEEN.clear()
        _SEEN.add(heads)
        return
    pattern = b"".join(
        re.escape(h) + b"(.{%d})" % size for h, (_, size) in zip(heads, layout, strict=True)
    )
    tags = tuple(tag for tag, _ in layout)
    known = _LAYOUTS.setdefault(n, [])
    known.insert(0, (re.compile(pattern, re.DOTALL), tags))
    del known[_MAX_PER_LENGTH:]
    _SEEN.discard(heads)


def check_cryptogram(issuer: Issuer, txn: Txn, ref: CardRef, tags: dict[str, bytes]) -> str | None:
    """Verify the AC in the chip data; on success register the ARPC finisher (DE55 tag 91)."""
    if "9F26" not in tags:
        mode = txn.request.get("22", "")[:2]
        if mode in _CHIP_MODES and txn.request.get("t") != "0220":
            txn.note("chip entry mode without an application cryptogram")
            return "30"
        return None
    if ref.app is None:
        txn.note("cryptogram for a card without an EMV application")
        return "05"
    crypto = ref.app.crypto
    if ref.imk_ac is None:
        txn.note("no issuer master key (imk_ac) for this application")
        return "96"
    psn = _psn(txn, tags, ref)
    cid = tags.get("9F27")
    kind = ("AAC", "TC", "ARQC", "AC")[cid[0] >> 6 if cid else 2]
    arqc = tags["9F26"]
    try:
        card = issuer.icc_mk(crypto.cvn, ref.imk_ac, ref.pan, psn)
        data, atc, un = card.ac_input(tags)
        sk = card.session(atc, un)
        ok = hmac.compare_digest(sk.mac(data, card.padding), arqc)
    except CryptoError as exc:
        txn.note(f"cryptogram data incomplete: {exc}")
        return "30"
    if not ok:
        txn.note(f"{kind} failed ({crypto.cvn})")
        return "05" if txn.request.get("t") != "0220" else None
    txn.note(f"{kind} verified ({crypto.cvn})")
    if kind == "AAC" and txn.request.get("t") != "0220":
        txn.note("card declined offline (AAC) yet went online")
        return "05"
    if kind == "ARQC":
        key = card.arpc_key(sk)
        txn.finishers.append(lambda t, rc: _arpc(t, rc, card, key, arqc))
    return None


def _psn(txn: Txn, tags: dict[str, bytes], ref: CardRef) -> str:
    de23 = txn.request.get("23")
    if de23 and de23.isdecimal():
        return de23[-2:]
    psn = tags.get("5F34")
    if psn is not None:
        return psn.hex()[-2:]
    return ref.app.psn


def _arpc(txn: Txn, rc: str, card: CardAcEngine, key: Alg3Key, arqc: bytes) -> None:
    """DE55 tag 91 for the final RC: ARPC method 1 (ARPC || ARC) or 2 (ARPC || CSU)."""
    arc = rc.encode("ascii")[:2].ljust(2, b"0")
    method = card.spec.arpc_method
    if method == 1:
        txn.fields["55"] = "910A" + (card.arpc(key, arqc, arc=arc) + arc).hex().upper()
    else:
        csu = CSU_APPROVED if rc == "00" else CSU_DECLINED
        txn.fields["55"] = "9108" + (card.arpc(key, arqc, csu=csu) + csu).hex().upper()
    txn.note(f"ARPC method {method} for ARC {rc}")


# ---- flows -------------------------------------------------------------------------------------


def _amount(txn: Txn) -> int | None:
    text = txn.request.get("4")
    return int(text) if text and text.isdecimal() else None


def _batch(txn: Txn) -> str:
    return txn.request.get("60", "")[:6] or "000000"


def card_checks(issuer: Issuer, txn: Txn, ref: CardRef | None) -> str | None:
    """Card found, expiry, track, cryptogram and PIN — the order a decline is reported in."""
    if ref is None:
        txn.note("unknown PAN" if txn.pan else "no PAN, track 2 or tag 5A in the request")
        return "14"
    if ref.profile.kind == "purse":
        return "57"
    tags: dict[str, bytes] = {}
    if "55" in txn.request:
        try:
            tags = txn.icc()
        except Iso8583Error as exc:
            txn.note(f"DE55: {exc}")
            return "30"
    rc = check_expiry(issuer, txn, ref)
    if rc is not None:
        return rc
    if "35" in txn.request:
        rc = check_track(issuer, txn, ref)
        if rc is not None:
            return rc
    rc = check_cryptogram(issuer, txn, ref, tags)
    if rc is not None:
        return rc
    return check_pin(issuer, txn, ref)


def _with_balance(txn: Txn, available: int) -> None:
    currency = txn.request.get("49", "000").zfill(3)[-3:]
    account = txn.request.get("3", "000000")[2:4]
    sign = "C" if available >= 0 else "D"
    txn.fields["54"] = f"{account}02{currency}{sign}{abs(available):012d}"


def financial(issuer: Issuer, txn: Txn) -> str:
    """0100 / 0200 / 0220: authorisation, pre-authorisation, purchase, refund, balance, advice."""
    req = txn.request
    ref = txn.card
    pcode = req.get("3", "")[:2]
    mti = req.get("t")
    amount = _amount(txn)
    rc = card_checks(issuer, txn, ref)
    if rc is not None:
        return rc
    assert ref is not None
    acct = issuer.account(ref.pan)
    tid = req.get("41", "")
    if pcode == "31":
        _with_balance(txn, acct.available)
        txn.note("balance inquiry")
        return "00"
    if pcode not in ("00", "03", "20"):
        txn.note(f"processing code {req.get('3')!r} not supported")
        return "12"
    if amount is None or amount <= 0:
        txn.note("amount missing or zero")
        return "13"
    txn.auth_id_wanted = True
    if pcode == "20":

        def refund(t: Txn) -> None:
            acct.available += amount
            _with_balance(t, acct.available)
            issuer.add_totals(tid, _batch(t), "refund", amount, 1)

        txn.effects.append(refund)
        return "00"
    if mti == "0220":
        return _advice(issuer, txn, acct, amount, tid)
    if amount > issuer.txn_limit:
        txn.note(f"amount {amount} above the single-transaction limit {issuer.txn_limit}")
        return "61"
    if amount > acct.available:
        txn.note(f"amount {amount} above the open-to-buy {acct.available}")
        return "51"
    preauth = pcode == "03" or req.get("25") == "06"

    def debit(t: Txn) -> None:
        acct.available -= amount
        _with_balance(t, acct.available)
        if preauth:
            acct.holds[t.fields["38"]] = amount
        elif mti == "0200":
            issuer.add_totals(tid, _batch(t), "sale", amount, 1)

    txn.effects.append(debit)
    return "00"


def completion_change(holds: dict[str, int], auth_id: str | None, amount: int) -> int:
    """Open-to-buy change of a posted 0220: the hold `auth_id` names is released (taken out of
    `holds`), then `amount` is debited. The live flow and the restart's rebuild share it."""
    return (holds.pop(auth_id, 0) if auth_id else 0) - amount


def reversal_change(holds: dict[str, int], kind: str, auth_id: str | None, amount: int) -> int:
    """Open-to-buy change of reversing an approved original of `kind`: a refund is debited
    again, a pre-authorisation's hold released (taken out of `holds`), anything else credited."""
    if kind == "refund":
        return -amount
    if auth_id and auth_id in holds:
        return holds.pop(auth_id)
    return amount


def _advice(issuer: Issuer, txn: Txn, acct: Any, amount: int, tid: str) -> str:
    """0220: completion of a pre-authorisation (DE38 names the hold) or an offline approval."""
    auth_id = txn.request.get("38")
    hold = acct.holds.get(auth_id) if auth_id else None

    def post(t: Txn) -> None:
        acct.available += completion_change(acct.holds, auth_id, amount)
        issuer.add_totals(tid, _batch(t), "sale", amount, 1)

    txn.note(f"completion of pre-authorisation {auth_id}" if hold is not None else "offline advice")
    txn.effects.append(post)
    return "00"


def _undo_issuer_state(issuer: Issuer, txn: Txn, orig: Any) -> None:
    """QR order / purse balance: undo what a restart's replay of `orig` applies (whatever its
    RC: an order is created before a rule picks it), so live and restored state agree."""
    from rig.host.issuer_restore import undo

    def effect(t: Txn) -> None:
        if undo(issuer, orig):
            t.note(f"QR order / purse change of original {getattr(orig, 'id', '?')} undone")

    txn.effects.append(effect)


def reversal(issuer: Issuer, txn: Txn) -> str:
    """0400/0401: undo a known original once; unknown originals are answered 00 (ISO practice)."""
    orig = txn.original
    if orig is None:
        txn.note("original not found; answered 00 so the terminal stops repeating")
        return "00"
    if getattr(orig, "reversed", False):
        txn.note("original already reversed; nothing posted")
        return "00"
    _undo_issuer_state(issuer, txn, orig)
    if getattr(orig, "rc", None) != "00":
        txn.note(f"original was declined (RC {getattr(orig, 'rc', None)}); no card posting to undo")
        return "00"
    amount = getattr(orig, "amount", None) or _amount(txn) or 0
    pan = txn.pan
    kind = getattr(orig, "kind", "")
    auth_id = getattr(orig, "auth_id", None)
    tid = txn.request.get("41", "")
    batch = getattr(orig, "batch", None) or "000000"

    def undo(t: Txn) -> None:
        if pan is not None and pan in issuer.by_pan:
            acct = issuer.account(pan)
            acct.available += reversal_change(acct.holds, kind, auth_id, amount)
            _with_balance(t, acct.available)
        if kind in ("purchase", "refund", "advice"):
            issuer.add_totals(tid, batch, "refund" if kind == "refund" else "sale", amount, -1)

    txn.effects.append(undo)
    txn.note(f"original {getattr(orig, 'id', '?')} reversed")
    return "00"
