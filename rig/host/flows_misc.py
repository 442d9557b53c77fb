"""Non-card flows of the issuer: network management and key exchange, reconciliation, QR
(consumer- and merchant-presented) and the prepaid purse. Called by `rig.host.issuer`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rig.crypto.keys import kcv
from rig.crypto.primitives import CryptoError, adjust_parity
from rig.crypto.tr31 import Header, wrap
from rig.host import flows_card
from rig.host.reconcile import is_qr
from rig.iso8583.messages import Iso8583Error, Totals, private_decode, private_encode
from rig.prepaid import purse
from rig.qr import cpm

if TYPE_CHECKING:
    from rig.host.issuer import Issuer, Txn

__all__ = ["KEY_EXCHANGE", "classify", "network", "prepaid", "qr", "reconciliation"]

KEY_EXCHANGE = {
    "PIN": ("tpk", "P0", "E"),
    "MAC": ("tak", "M3", "C"),
    "DATA": ("tdk", "D0", "B"),
}
"""DE48 K1 key type -> (key store name prefix, TR-31 key usage, mode of use)."""

ORDER_STATUSES = ("PENDING", "PAID", "CLOSED", "REFUNDED", "FAILED")
_NETWORK = {"001": "sign-on", "002": "sign-off", "301": "echo"}
_FIN_MTIS = ("0100", "0200", "0220")


def classify(req: Mapping[str, str]) -> str:
    """The journal kind of a request (auth, preauth, purchase, refund, balance, advice, …)."""
    mti = req.get("t", "")
    pcode = req.get("3", "")[:2]
    if mti not in _FIN_MTIS:
        if mti == "0800":
            return "network"
        if mti in ("0400", "0401"):
            return "reversal"
        return "reconciliation" if mti == "0500" else "unknown"
    if "62" in req:
        return "prepaid"
    if is_qr(req):
        return "qr"
    if mti == "0220":
        return "advice"
    if pcode == "31":
        return "balance"
    if pcode == "20":
        return "refund"
    if pcode == "03" or req.get("25") == "06":
        return "preauth"
    return "auth" if mti == "0100" else "purchase"


def _sub(txn: Txn, field: str) -> dict[str, str] | None:
    try:
        return private_decode(txn.request.get(field, ""), field)
    except Iso8583Error as exc:
        txn.note(f"DE{field}: {exc}")
        return None


# ---- network management -------------------------------------------------------------------------


def network(issuer: Issuer, txn: Txn) -> str:
    """0800: sign-on, sign-off, echo, key exchange (DE70 161)."""
    code = txn.request.get("70", "")
    if code in _NETWORK:
        txn.note(_NETWORK[code])
        return "00"
    if code == "161":
        return _key_exchange(issuer, txn)
    txn.note(f"network management code {code!r} not supported")
    return "12"


def _key_exchange(issuer: Issuer, txn: Txn) -> str:
    sub = _sub(txn, "48")
    if sub is None:
        return "30"
    wanted = sub.get("K1", "PIN")
    if wanted not in KEY_EXCHANGE:
        txn.note(f"key type {wanted!r}: use PIN, MAC or DATA")
        return "12"
    prefix, usage, mode = KEY_EXCHANGE[wanted]
    zmk = issuer.key("zmk")
    if zmk is None or len(zmk) not in (16, 24):
        txn.note("no TDES zmk in the key store")
        return "96"
    tid = txn.request.get("41", "")
    new_key = adjust_parity(issuer.random_bytes(16))
    header = Header("B", usage, "T", mode, "00", "N")
    try:
        block = wrap(zmk, header, new_key, random_bytes=issuer.random_bytes)
    except CryptoError as exc:
        txn.note(f"TR-31 wrap failed: {exc}")
        return "96"
    check = kcv(new_key).hex().upper()
    txn.fields["48"] = private_encode({"K1": wanted, "K2": block, "K3": check})
    name = f"{prefix}:{tid}"

    def store(_: Txn) -> None:
        issuer.keystore.put(name, new_key, kind=prefix)

    txn.effects.append(store)
    txn.note(f"new {wanted} key {name} (KCV {check}) under the zone key")
    return "00"


# ---- reconciliation -----------------------------------------------------------------------------


def reconciliation(issuer: Issuer, txn: Txn) -> str:
    """0500: 00 in balance, 95 out of balance; DE63 of the 0510 holds the host's totals."""
    req = txn.request
    try:
        theirs = Totals.decode(req.get("63", ""))
    except Iso8583Error as exc:
        txn.note(str(exc))
        return "30"
    batch = req.get("60", "")[:6] or "000000"
    tid = req.get("41", "")
    if txn.reconciliation is not None:
        in_balance, diffs = txn.reconciliation
        ours = txn.host_totals or _host_from_diffs(theirs, diffs)
    else:
        ours = txn.host_totals or issuer.totals.get((tid, batch), Totals())
        in_balance, diffs = ours == theirs, []
    txn.fields["63"] = ours.encode()
    if in_balance:
        txn.note(f"batch {batch} in balance")
        return "00"
    txn.note(f"batch {batch} out of balance ({len(diffs)} differences)")
    return "95"


def _host_from_diffs(theirs: Totals, diffs: list[dict[str, Any]]) -> Totals:
    values = {
        "sale_count": theirs.sale_count,
        "sale_amount": theirs.sale_amount,
        "refund_count": theirs.refund_count,
        "refund_amount": theirs.refund_amount,
    }
    for d in diffs:
        if d.get("type") == "figure" and d.get("field") in values:
            values[d["field"]] = int(d["host"])
    return Totals(**values)


# ---- QR -----------------------------------------------------------------------------------------


def qr(issuer: Issuer, txn: Txn) -> str:
    """DE48 01 = CPM (consumer-presented payment) or MPM (order create / status / refund)."""
    sub = _sub(txn, "48")
    if sub is None:
        return "30"
    mode = sub.get("01")
    if mode == "CPM":
        return _cpm(issuer, txn, sub)
    if mode == "MPM":
        return _mpm(issuer, txn, sub)
    txn.note(f"QR mode {mode!r}: use CPM or MPM")
    return "12"


def _cpm(issuer: Issuer, txn: Txn, sub: dict[str, str]) -> str:
    try:
        payload = cpm.decode(sub.get("02", ""))
    except cpm.CpmError as exc:
        txn.note(f"CPM token: {exc}")
        return "30"
    app: dict[int, Any] = {}
    for key, value in payload.applications[0].items():
        if isinstance(value, dict):
            app.update({k: v for k, v in value.items() if isinstance(v, bytes)})
        else:
            app[key] = value
    pan = None
    if 0x5A in app:
        pan = app[0x5A].hex().upper().rstrip("F")
    elif 0x57 in app:
        pan = app[0x57].hex().upper().partition("D")[0]
    txn.pan = pan
    txn.card = issuer.by_pan.get(pan) if pan else None
    if "55" not in txn.request and 0x9F26 in app:
        txn.note("CPM cryptogram not verified (no DE55 with the terminal data)")
    return flows_card.financial(issuer, txn)


def _mpm(issuer: Issuer, txn: Txn, sub: dict[str, str]) -> str:
    req = txn.request
    order_id = sub.get("03")
    tid = req.get("41", "")
    if order_id is None:
        amount = req.get("4", "")
        if not amount.isdecimal() or int(amount) <= 0:
            txn.note("MPM order needs an amount")
            return "13"
        order_id = issuer.next_order_id(tid)
        issuer.orders[order_id] = {"amount": int(amount), "status": "PENDING", "terminal": tid}
        txn.fields["48"] = private_encode({"01": "MPM", "03": order_id, "04": "PENDING"})
        txn.note(f"MPM order {order_id} created")
        return "00"
    order = issuer.orders.get(order_id)
    if order is None:
        txn.note(f"MPM order {order_id!r} unknown")
        return "12"
    if req.get("3", "")[:2] == "20":
        if order["status"] != "PAID":
            txn.note(f"order {order_id} is {order['status']}; only PAID orders are refunded")
            return "12"
        txn.effects.append(lambda t: order.update(status="REFUNDED"))
        status = "REFUNDED"
    else:
        if order["status"] == "PENDING" and issuer.mpm_auto_pay:
            order["status"] = "PAID"
            batch = req.get("60", "")[:6] or "000000"
            issuer.add_totals(order["terminal"], batch, "sale", order["amount"], 1)
        status = order["status"]
    txn.fields["48"] = private_encode({"01": "MPM", "03": order_id, "04": status})
    txn.note(f"MPM order {order_id} {status}")
    return "00"


# ---- prepaid purse ------------------------------------------------------------------------------


def _purse_state(issuer: Issuer, asn: str) -> dict[str, Any] | None:
    profile = issuer.by_purse.get(asn.upper())
    if profile is None:
        return None
    state = issuer.purses.get(asn.upper())
    if state is None:
        p = profile.purse
        mlk, mpk, mtk = issuer.purse_master_keys[profile.id]
        keys = purse.PurseKeys.from_master_keys(mlk, mpk, mtk, bytes.fromhex(p.asn))
        state = {"balance": p.initial_balance, "max": p.max_balance, "keys": keys, "issued": True}
        issuer.purses[asn.upper()] = state
    return state


def _hex(sub: dict[str, str], sid: str, size: int) -> bytes:
    value = sub.get(sid)
    if value is None or len(value) != 2 * size:
        raise ValueError(f"DE62 subfield {sid} must be {2 * size} hex digits")
    return bytes.fromhex(value)


def _datetime(sub: dict[str, str], issuer: Issuer) -> tuple[str, bytes, bytes]:
    text = sub.get("11") or issuer.now().strftime("%Y%m%d%H%M%S")
    if len(text) != 14 or not text.isdecimal():
        raise ValueError("DE62 subfield 11 must be YYYYMMDDhhmmss")
    return text, bytes.fromhex(text[:8]), bytes.fromhex(text[8:])


def prepaid(issuer: Issuer, txn: Txn) -> str:
    """DE62 04: ISSUE, BALANCE, LOAD (MAC1 checked, MAC2 answered), PURCHASE record (TAC)."""
    sub = _sub(txn, "62")
    if sub is None:
        return "30"
    asn = sub.get("01", "")
    state = _purse_state(issuer, asn)
    if state is None:
        txn.note("unknown purse id" if asn else "DE62 without purse id (01)")
        return "14"
    kind = sub.get("04", "")
    out = {"01": asn, "04": kind}
    try:
        rc = _purse_op(issuer, txn, sub, state, kind, out)
    except (ValueError, purse.PurseError) as exc:
        txn.note(f"prepaid {kind}: {exc}")
        return "30"
    txn.fields["62"] = private_encode(out)
    return rc


def _purse_op(
    issuer: Issuer, txn: Txn, sub: dict[str, str], state: dict[str, Any], kind: str, out: dict
) -> str:
    amount_text = txn.request.get("4", "")
    amount = int(amount_text) if amount_text.isdecimal() else 0
    if kind in ("ISSUE", "BALANCE"):
        out["03"] = f"{state['balance']:012d}"
        txn.note(f"purse {kind.lower()}")
        return "00"
    if kind not in ("LOAD", "PURCHASE"):
        txn.note(f"prepaid transaction type {kind!r}: use ISSUE, BALANCE, LOAD or PURCHASE")
        return "12"
    if amount <= 0:
        txn.note("prepaid amount missing or zero")
        return "13"
    keys: purse.PurseKeys = state["keys"]
    tid = _hex(sub, "10", 6)
    stamp, date, time = _datetime(sub, issuer)
    if kind == "LOAD":
        counter = int.from_bytes(_hex(sub, "02", 2), "big")
        old = int(sub.get("03", "x")) if sub.get("03", "").isdecimal() else None
        if old is None:
            raise ValueError("DE62 subfield 03 (balance before the load) must be digits")
        seslk = purse.load_session_key(keys.dlk, _hex(sub, "09", 4), counter)
        if not hmac.compare_digest(purse.load_mac1(seslk, old, amount, tid), _hex(sub, "05", 4)):
            txn.note("MAC1 does not verify")
            return "63"
        if old + amount > state["max"]:
            txn.note(f"load would exceed the purse maximum {state['max']}")
            return "61"
        if old != state["balance"]:
            txn.note(f"card balance {old} differs from the host's {state['balance']}")
        mac2 = purse.load_mac2(seslk, amount, tid, date, time)
        out.update({"03": f"{old + amount:012d}", "06": mac2.hex().upper(), "11": stamp})
        txn.effects.append(lambda t: state.update(balance=old + amount))
        txn.note("MAC1 ok; MAC2 issued")
        return "00"
    seq = int.from_bytes(_hex(sub, "08", 4), "big")
    tac = purse.purchase_tac(keys.dtk, amount, tid, seq, date, time)
    if not hmac.compare_digest(tac, _hex(sub, "07", 4)):
        txn.note("TAC does not verify")
        return "63"
    out["03"] = f"{state['balance'] - amount:012d}"
    txn.effects.append(lambda t: state.update(balance=state["balance"] - amount))
    txn.note("purchase record TAC ok")
    return "00"
