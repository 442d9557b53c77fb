"""Stored-value purse: load and purchase flows between an independent terminal/host side and the
card's Purse, every MAC and TAC checked, every refusal with its status word.

Independent cross-check: psec (ISO 9797-1 CBC-MAC and TDES ECB) recomputes the MACs and the key
diversification from the formulas in docs/prepaid.md.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psec.des import encrypt_tdes_ecb
from psec.mac import generate_cbc_mac

from rig.prepaid import purse as p
from rig.prepaid.purse import Purse, PurseError, PurseKeys

# TEST KEYS ONLY - issuer master keys of the rig's test purse scheme.
MLK = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
MPK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
MTK = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
ASN = bytes.fromhex("0000100000000000001A")  # application serial number, 10 bytes
TID = bytes.fromhex("112233445566")
DATE, TIME = bytes.fromhex("20261125"), bytes.fromhex("183000")


@pytest.fixture
def purse() -> Purse:
    return Purse(PurseKeys.from_master_keys(MLK, MPK, MTK, ASN))


def psec_mac(key8: bytes, data: bytes) -> bytes:
    return generate_cbc_mac(key8, data, padding=2)[:4]


def test_diversification_matches_psec() -> None:
    asn8 = ASN[-8:]
    inv = bytes(b ^ 0xFF for b in asn8)
    expected = encrypt_tdes_ecb(MLK, asn8) + encrypt_tdes_ecb(MLK, inv)
    assert p.diversify(MLK, ASN) == expected
    assert p.diversify(MLK, ASN) != p.diversify(MLK, ASN[:-1] + b"\x1b")


@given(st.binary(min_size=8, max_size=8), st.binary(max_size=40))
def test_purse_mac_matches_psec_cbc_mac(key: bytes, data: bytes) -> None:
    assert p.purse_mac(key, data) == psec_mac(key, data)


def test_load_flow_host_side_independent(purse: Purse) -> None:
    random4 = bytes.fromhex("A1B2C3D4")
    init = purse.initialize_for_load(5000, TID, random4)
    # host side, recomputed with psec from the documented formulas
    dlk = p.diversify(MLK, ASN)
    seslk = encrypt_tdes_ecb(dlk, random4 + (0).to_bytes(2, "big") + b"\x80\x00")
    assert init.mac1 == psec_mac(
        seslk, (0).to_bytes(4, "big") + (5000).to_bytes(4, "big") + b"\x02" + TID
    )
    mac2 = psec_mac(seslk, (5000).to_bytes(4, "big") + b"\x02" + TID + DATE + TIME)
    tac = purse.credit_for_load(DATE, TIME, mac2)
    assert purse.balance == 5000 and purse.online_counter == 1
    dtk = p.diversify(MTK, ASN)
    tac_key = bytes(a ^ b for a, b in zip(dtk[:8], dtk[8:], strict=True))
    tac_data = (5000).to_bytes(4, "big") + (0).to_bytes(2, "big") + (5000).to_bytes(4, "big")
    assert tac == psec_mac(tac_key, tac_data + b"\x02" + TID + DATE + TIME)


def test_purchase_flow_terminal_side_independent(purse: Purse) -> None:
    purse.balance = 10_000
    random4 = bytes.fromhex("01020304")
    init = purse.initialize_for_purchase(1234, TID, random4)
    assert init.balance == 10_000 and init.offline_counter == 0
    dpk = p.diversify(MPK, ASN)
    seq = 0x0001_0042
    sespk = encrypt_tdes_ecb(dpk, random4 + b"\x00\x00" + b"\x00\x42")
    mac1 = psec_mac(sespk, (1234).to_bytes(4, "big") + b"\x06" + TID + DATE + TIME)
    tac, mac2 = purse.debit_for_purchase(seq, DATE, TIME, mac1)
    assert mac2 == psec_mac(sespk, (1234).to_bytes(4, "big"))
    assert purse.balance == 10_000 - 1234 and purse.offline_counter == 1
    dtk = p.diversify(MTK, ASN)
    tac_key = bytes(a ^ b for a, b in zip(dtk[:8], dtk[8:], strict=True))
    data = (1234).to_bytes(4, "big") + b"\x06" + TID + seq.to_bytes(4, "big") + DATE + TIME
    assert tac == psec_mac(tac_key, data)
    assert [r.kind for r in purse.log] == [p.TYPE_PURCHASE]


def test_bad_mac2_leaves_balance_untouched(purse: Purse) -> None:
    purse.initialize_for_load(100, TID, bytes(4))
    with pytest.raises(PurseError) as exc:
        purse.credit_for_load(DATE, TIME, bytes(4))
    assert exc.value.sw == 0x9302 and purse.balance == 0 and purse.online_counter == 0


def test_bad_mac1_leaves_balance_untouched(purse: Purse) -> None:
    purse.balance = 500
    purse.initialize_for_purchase(100, TID, bytes(4))
    with pytest.raises(PurseError) as exc:
        purse.debit_for_purchase(1, DATE, TIME, b"\xde\xad\xbe\xef")
    assert exc.value.sw == 0x9302 and purse.balance == 500


def test_insufficient_funds_and_limits(purse: Purse) -> None:
    with pytest.raises(PurseError) as exc:
        purse.initialize_for_purchase(1, TID, bytes(4))
    assert exc.value.sw == 0x9401
    with pytest.raises(PurseError) as exc:
        purse.initialize_for_load(purse.max_balance + 1, TID, bytes(4))
    assert exc.value.sw == 0x6A83
    with pytest.raises(PurseError) as exc:
        purse.initialize_for_load(1, b"\x00", bytes(4))
    assert exc.value.sw == 0x6700


def test_second_step_without_first_is_refused(purse: Purse) -> None:
    with pytest.raises(PurseError, match="without INITIALIZE FOR LOAD"):
        purse.credit_for_load(DATE, TIME, bytes(4))
    with pytest.raises(PurseError, match="without INITIALIZE FOR PURCHASE"):
        purse.debit_for_purchase(1, DATE, TIME, bytes(4))


@given(st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=8))
def test_balance_is_sum_of_loads_minus_purchases(amounts: list[int]) -> None:
    purse = Purse(PurseKeys.from_master_keys(MLK, MPK, MTK, ASN))
    dlk, dpk = p.diversify(MLK, ASN), p.diversify(MPK, ASN)
    for i, amount in enumerate(amounts):
        rnd = i.to_bytes(4, "big")
        purse.initialize_for_load(amount, TID, rnd)
        seslk = p.load_session_key(dlk, rnd, purse.online_counter)
        purse.credit_for_load(DATE, TIME, p.load_mac2(seslk, amount, TID, DATE, TIME))
    spent = amounts[0]
    purse.initialize_for_purchase(spent, TID, b"\x00\x00\x00\x09")
    sespk = p.purchase_session_key(dpk, b"\x00\x00\x00\x09", purse.offline_counter, 7)
    purse.debit_for_purchase(7, DATE, TIME, p.purchase_mac1(sespk, spent, TID, DATE, TIME))
    assert purse.balance == sum(amounts) - spent
    assert purse.online_counter == len(amounts) and purse.offline_counter == 1


def test_zero_load_is_out_of_range_and_abandon_forgets_pending(purse: Purse) -> None:
    with pytest.raises(PurseError) as exc:
        purse.initialize_for_load(0, TID, bytes(4))
    assert exc.value.sw == 0x6A80
    purse.initialize_for_load(10, TID, bytes(4))
    purse.abandon()
    with pytest.raises(PurseError, match="without INITIALIZE FOR LOAD"):
        purse.credit_for_load(DATE, TIME, bytes(4))
