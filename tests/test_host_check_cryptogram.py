"""flows_card.check_cryptogram / _arpc on the cached AC engine against the straightforward
version built on rig.crypto.arqc (kept below as the reference): same RC, notes and DE55 tag 91
for valid, tampered and malformed chip data of every profile; and the bounded card cache.
TEST KEYS and TEST PANs only (cardprofiles/)."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.crypto import ac_engine
from rig.crypto.arqc import (
    TAG_LENGTHS,
    arpc_method1,
    arpc_method2,
    build_ac_data,
    compute_ac,
    generate_ac,
    get_cvn,
    icc_master_key,
    session_key,
)
from rig.crypto.primitives import CryptoError
from rig.host import flows_card
from rig.host.issuer import CardRef, Issuer, Txn
from rig.iso8583.messages import de55_encode
from rig.profiles import load_all

PROFILES = load_all("cardprofiles")
CHIP = sorted(p.id for p in PROFILES.values() if p.applications)


def reference_check(txn: Txn, ref: CardRef, tags: dict[str, bytes]) -> str | None:
    """check_cryptogram as it was before the engine (ICC master key derived per call)."""
    if "9F26" not in tags:
        mode = txn.request.get("22", "")[:2]
        if mode in ("05", "07") and txn.request.get("t") != "0220":
            txn.note("chip entry mode without an application cryptogram")
            return "30"
        return None
    if ref.app is None:
        txn.note("cryptogram for a card without an EMV application")
        return "05"
    crypto = ref.app.crypto
    de23 = txn.request.get("23")
    if de23 and de23.isdecimal():
        psn = de23[-2:]
    elif "5F34" in tags:
        psn = tags["5F34"].hex()[-2:]
    else:
        psn = ref.app.psn
    cid = tags.get("9F27", b"\x80")[:1] or b"\x80"
    kind = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}.get(cid[0] & 0xC0, "AC")
    try:
        spec = get_cvn(crypto.cvn)
        mk = icc_master_key(crypto.cvn, bytes.fromhex(crypto.imk_ac), ref.pan, psn)
        data = build_ac_data(spec, tags)
        un = tags.get("9F37") if spec.session == "mastercard" else None
        if "9F36" not in tags or (spec.session == "mastercard" and un is None):
            raise CryptoError("tag 9F36 (and 9F37 for Mastercard SKD) is missing from the AC data")
        sk = session_key(spec, mk, tags["9F36"], un)
        ok = hmac.compare_digest(compute_ac(sk, data, spec.padding), tags["9F26"])
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
        key = mk if spec.arpc_key == "icc_mk" else sk
        txn.finishers.append(lambda t, rc: reference_arpc(t, rc, spec, key, tags["9F26"]))
    return None


def reference_arpc(txn: Txn, rc: str, spec: Any, key: bytes, arqc: bytes) -> None:
    arc = rc.encode("ascii")[:2].ljust(2, b"0")
    if spec.arpc_method == 1:
        data = arpc_method1(key, arqc, arc) + arc
    else:
        csu = flows_card.CSU_APPROVED if rc == "00" else flows_card.CSU_DECLINED
        data = arpc_method2(key, arqc, csu) + csu
    txn.fields["55"] = de55_encode({0x91: data})
    txn.note(f"ARPC method {spec.arpc_method} for ARC {rc}")


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer(PROFILES)


def _valid_tags(profile_id: str, atc: int, un: bytes, iad: bytes) -> dict[str, bytes]:
    app = PROFILES[profile_id].applications[0]
    tags = {tag: bytes(range(1, size + 1)) for tag, size in TAG_LENGTHS.items()}
    tags |= {"9F36": atc.to_bytes(2, "big"), "9F37": un, "9F10": iad, "82": bytes.fromhex(app.aip)}
    mk = icc_master_key(app.crypto.cvn, bytes.fromhex(app.crypto.imk_ac), app.pan, app.psn)
    return tags | {"9F26": generate_ac(app.crypto.cvn, mk, tags), "9F27": b"\x80"}


def _run(fast: bool, issuer: Issuer, request: dict[str, str], tags: dict[str, bytes], rc: str):
    """(RC, notes, response fields) of the engine (fast) or the reference check, finishers run."""
    ref = issuer.by_pan[PROFILES[request["pan"]].applications[0].pan]
    txn = Txn({k: v for k, v in request.items() if k != "pan"})
    if fast:
        got = flows_card.check_cryptogram(issuer, txn, ref, dict(tags))
    else:
        got = reference_check(txn, ref, dict(tags))
    for finish in txn.finishers:
        finish(txn, rc)
    return got, txn.notes, txn.fields


mutations = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from([*TAG_LENGTHS, "9F10", "9F26", "9F27"])),
    st.tuples(st.just("size"), st.sampled_from([*TAG_LENGTHS, "9F10", "9F26"]), st.integers(0, 34)),
    st.tuples(st.just("flip"), st.integers(0, 63)),
    st.tuples(st.just("cid"), st.binary(max_size=2)),
    st.tuples(st.just("psn"), st.sampled_from(["", "01", "001", "1", "AB", "005"])),
    st.tuples(st.just("5F34"), st.binary(max_size=2)),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    profile_id=st.sampled_from(CHIP),
    atc=st.integers(0, 0xFFFF),
    un=st.binary(min_size=4, max_size=4),
    iad=st.binary(min_size=8, max_size=32),
    changes=st.lists(mutations, max_size=3),
    mti=st.sampled_from(["0100", "0200", "0220"]),
    rc=st.sampled_from(["00", "05", "51", "Z3", "9", "", "000"]),
)
def test_same_rc_notes_and_tag_91_as_reference(
    issuer: Issuer, profile_id, atc, un, iad, changes, mti, rc
) -> None:
    tags = _valid_tags(profile_id, atc, un, iad)
    request = {"t": mti, "22": "051", "pan": profile_id}
    for change in changes:
        if change[0] == "drop":
            tags.pop(change[1], None)
        elif change[0] == "size":
            tags[change[1]] = bytes(range(change[2]))
        elif change[0] == "flip" and tags.get("9F26"):
            ac = bytearray(tags["9F26"])
            ac[change[1] // 8 % len(ac)] ^= 1 << (change[1] % 8)
            tags["9F26"] = bytes(ac)
        elif change[0] == "cid":
            tags["9F27"] = change[1]
        elif change[0] == "psn":
            request["23"] = change[1]
        else:
            tags["5F34"] = change[1]
    assert _run(True, issuer, request, tags, rc) == _run(False, issuer, request, tags, rc)


@pytest.mark.parametrize("profile_id", CHIP)
def test_valid_arqc_approves_with_the_reference_tag_91(issuer: Issuer, profile_id: str) -> None:
    tags = _valid_tags(profile_id, 7, b"\xa1\xb2\xc3\xd4", bytes(range(18)))
    request = {"t": "0100", "22": "051", "pan": profile_id}
    cvn = PROFILES[profile_id].applications[0].crypto.cvn
    method = get_cvn(cvn).arpc_method
    for rc in ("00", "05"):
        got = _run(True, issuer, request, tags, rc)
        assert got[0] is None and got[2]["55"].startswith("91"), got
        assert got[1] == [f"ARQC verified ({cvn})", f"ARPC method {method} for ARC {rc}"]
        assert got == _run(False, issuer, request, tags, rc)


def test_card_cache_returns_one_engine_per_card_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuer = Issuer(PROFILES)
    monkeypatch.setattr(ac_engine, "CARD_CACHE_SIZE", 3)
    imk = "0123456789ABCDEFFEDCBA9876543210"
    first = issuer.icc_mk("visa-10", imk, "4761739001010010", "01")
    assert issuer.icc_mk("visa-10", imk, "4761739001010010", "01") is first
    assert first.icc_mk == icc_master_key("visa-10", bytes.fromhex(imk), "4761739001010010", "01")
    for n in range(10):
        engine = issuer.icc_mk("visa-18", imk, f"47617390010100{n:02d}", "00")
        assert engine.icc_mk == icc_master_key(
            "visa-18", bytes.fromhex(imk), f"47617390010100{n:02d}", "00"
        )
        assert len(issuer._icc_mk) <= 3
    assert issuer.icc_mk("visa-10", imk, "4761739001010010", "01") is not first, "evicted"
    with pytest.raises(CryptoError, match="unknown CVN"):
        issuer.icc_mk("visa-99", imk, "4761739001010010", "01")
