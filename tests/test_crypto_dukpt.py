"""DUKPT: TDES per ANSI X9.24-1:2009 Annex A, AES per ANSI X9.24-3:2017 (rig.crypto.dukpt).

Every value below is a published test vector; BDKs are the standards' test BDKs, never live keys.
No independent Python library among the dev dependencies implements DUKPT, so the published
vectors (21 initial and 13 rollover KSNs for TDES, 16 KSNs for AES) carry the whole check.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.crypto import dukpt
from rig.crypto.dukpt import DukptError
from rig.crypto.mac import aes_cmac, mac_alg3
from rig.crypto.pinblock import encode_format4_pan_field, format4_encipher
from rig.crypto.primitives import aes_cbc_encrypt, tdes_cbc_encrypt, tdes_ecb_encrypt

h = bytes.fromhex

# ---- ANSI X9.24-1:2009 Annex A.4 (test BDK, initial KSN, PIN 1234 / PAN 4012345678909) ----
BDK = h("0123456789ABCDEFFEDCBA9876543210")
IKSN = h("FFFF9876543210E00000")
IPEK = h("6AC292FAA1315B4D858AB3A3D7D5933A")
CLEAR_PIN_BLOCK = h("041274EDCBA9876F")
TXN_DATA = b"4012345678909D987"

# A.4.2 initial sequence: counter -> (transaction key, encrypted PIN block, request MAC,
# response MAC, first 8 bytes of the encrypted request).
A42 = {
    1: ("042666B49184CFA368DE9628D0397BC9", "1B9C1845EB993A7A", "9CCC7817", "20364223",
        "FC0D53B7EA1FDA9E"),
    2: ("C46551CEF9FD24B0AA9AD834130D3BC7", "10A01C8D02C69107", "F608A9BC", "D1FCA6BE",
        "A2B4E70F846E63D6"),
    3: ("0DF3D9422ACA56E547676D07AD6BADFA", "18DC07B94797B466", "20B59A4F", "BAD4CC9C",
        "BD751E65F10E75B6"),
    4: ("279C0F6AEED0BE652B2C733E1383AE91", "0BC79509D5645DF7", "C7BFA6CC", "1EB08AEE",
        "1118F50947441BBD"),
    5: ("5F8DC6D2C845C125508DDC048093B83F", "5BC0AF22AD87B327", "0202B963", "5CBE3E81",
        "9FD7BD1EC28845AC"),
    9: ("27E31064FDC565698900E2057F658E7E", "536CF7F678ACFC8D", "26AA23DC", "37F17B8F",
        "7CB9080923ED4D7D"),
    21: ("E161D1956A61F6D2F37AFD7F9CC3699A", "72105C22EBC791E6", "B2033EBD", "BDA3AEE1",
        "42A9342FD5C1ACD2"),
}  # fmt: skip

# A.4.3 rollover sequence: KSN -> (transaction key, encrypted PIN block).
A43 = [
    ("FFFF9876543210EFF800", "F9CDFEBF4F5B1D9EB3EC12454527E176", "33365F5CC6F23C35"),
    ("FFFF9876543210EFF801", "5BEE92627E97825C911BF619DF72CA3B", "3A86BF003F835C9D"),
    ("FFFF9876543210EFF802", "64CA2F8AB93F61B01620B00BF77C7301", "3DB977D05C36DF3F"),
    ("FFFF9876543210EFF804", "35A168695B3BA83307E871C42021DD37", "BA83243305712099"),
    ("FFFF9876543210EFF808", "12C380FCB72ED3C26FC6079AF63F4787", "B0DA04AC90A36D85"),
    ("FFFF9876543210EFF810", "D8007C833A1E3C49C6889B97A68C54FF", "2CF02BD9C309EEDA"),
    ("FFFF9876543210EFF820", "A9C9FF9B735FDD49591F296B0BF0FD70", "9D1E2F77AEEE81C6"),
    ("FFFF9876543210EFF840", "0E3E221062CB5E03A384602783A004FA", "40870B0F8BA2011C"),
    ("FFFF9876543210EFF880", "CA8225C587124DFBB87F279C0BE29727", "22E340D6ABB40981"),
    ("FFFF9876543210EFF900", "906AAC1751D4971A144D52C76C6E1F97", "1A4C10AFBA03A430"),
    ("FFFF9876543210EFFA00", "2B9E2CE7C2750337E10B54D2989EA6AF", "849763B43E5F9CFF"),
    ("FFFF9876543210EFFC00", "F9430DF975082491C77BE4EF4FDB91EE", "DEFC6F09F8927B71"),
    ("FFFF9876543210F00000", "AA4D58DB653EC74A48C75F2F047DD2B5", "73EC88AD0AC5830E"),
]

# ---- ANSI X9.24-3:2017 supplement test vectors, AES-128 BDK ----
AES_BDK = h("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IKID = h("1234567890123456")
AES_IK = h("1273671EA26AC29AFA4D1084127652A1")
AES_IK_256 = h("CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F")
# counter -> (derivation key, PIN key, MAC generation key, data encryption key, encrypted
# format 4 PIN block for PIN 1234 / PAN 4111111111111111 / fill 2F69ADDE2E9E7ACE)
AES_VECTORS = {
    1: ("4F21B565BAD9835E112B6465635EAE44", "AF8CB133A78F8DC2D1359F18527593FB",
        "A2DC23DE6FDE0824A2BC321E08E4B8B7", "A35C412EFD41FDB98B69797C02DCD08F",
        "A912150391AB65A67E52883D81CE2D15"),
    2: ("2F34D68DE10F68D38091A73B9E7C437C", "D30BDC73EC9714B000BEC66BDB7B6D09",
        "484C3B06E8562704528CD5B46FB12FB6", "D639514AA33AC43AD9229E433D6D4E5B",
        "52A00503BD34BA1383F6A7EE9FE2547F"),
    3: ("031504E530365CF81264238540518318", "7D69F01F3B45449F62C7816ECE723268",
        "A5DF7D9D800CA769766F0C77CA4E6E6C", "EF17F6AB45B4820C93A3DCB21BC491AD",
        "A5A27E82B43A9A866A93D7ABE89CEF93"),
    8: ("718EE6CF0B27E53D5F7AF99C4D8146A2", "4D9DF3FBEE3448FC3E676D04320A90F5",
        "6FD572E5D59E618875F193484F9178FB", "650F34204ABD4E57764D61AC3D266FB1",
        "8308BB857C17F390369F761F8EB358FA"),
}  # fmt: skip
AES_DERIVATION_ONLY = {
    0x0001FFFE: "E21E8C8D347F8561A2BE752DAA85A111",
    0x00020000: "F7AE9025468A25D37B7249CFFED224C8",
    0x00020001: "692C8EA4013645135B36497131DF9D2C",
    0xFFFE2000: "48E585B694EB0B18D5C35443E163C0BA",
    0xFFFE4000: "396C2C7CA1EA701C03B86B7D41F0C562",
    0xFFFE8000: "0387625F189B58AE03EF0E8CCA41105E",
    0xFFFF0000: "F6BA59389BD14A9855BE9727E7C52E3C",
}


def tdes_ksn(counter: int) -> bytes:
    return (int.from_bytes(IKSN, "big") | counter).to_bytes(10, "big")


def aes_ksn(counter: int) -> bytes:
    return IKID + counter.to_bytes(4, "big")


def test_tdes_ipek_annex_a():
    # Source: ANSI X9.24-1:2009 A.4 (IPEK from the test BDK and initial KSN).
    assert dukpt.tdes_ipek(BDK, IKSN) == IPEK
    assert dukpt.tdes_ipek(BDK, tdes_ksn(7)) == IPEK


@pytest.mark.parametrize("counter", sorted(A42))
def test_tdes_initial_sequence_annex_a(counter):
    # Source: ANSI X9.24-1:2009 A.4.2 (initial sequence, data "4012345678909D987").
    txn, pin_block, req_mac, resp_mac, req_enc = A42[counter]
    ksn = tdes_ksn(counter)
    assert dukpt.tdes_transaction_key(BDK, ksn) == h(txn)
    keys = dukpt.tdes_working_keys(BDK, ksn)
    assert tdes_ecb_encrypt(keys["pin"], CLEAR_PIN_BLOCK) == h(pin_block)
    assert mac_alg3(keys["mac"], TXN_DATA)[:4] == h(req_mac)
    assert mac_alg3(keys["mac_response"], TXN_DATA)[:4] == h(resp_mac)
    assert tdes_cbc_encrypt(keys["data"], TXN_DATA + bytes(7))[:8] == h(req_enc)


def test_tdes_pin_variant_of_first_key():
    # Source: ANSI X9.24-1:2009 A.4.1 table A-1 (PIN variant XORs FF into bytes 7 and 15).
    pin = dukpt.tdes_working_keys(BDK, tdes_ksn(1))["pin"]
    assert pin == h("042666B49184CF5C68DE9628D0397B36")


@pytest.mark.parametrize(("ksn", "txn", "pin_block"), A43)
def test_tdes_rollover_sequence_annex_a(ksn, txn, pin_block):
    # Source: ANSI X9.24-1:2009 A.4.3 (rollover sequence).
    assert dukpt.tdes_transaction_key(BDK, h(ksn)) == h(txn)
    pin_key = dukpt.tdes_working_keys(BDK, h(ksn))["pin"]
    assert tdes_ecb_encrypt(pin_key, CLEAR_PIN_BLOCK) == h(pin_block)


def test_tdes_ksn_sequence_follows_annex_a():
    # Source: ANSI X9.24-1:2009 A.4.3: the KSNs after EFF800 skip counters with >10 one-bits.
    ksn = h(A43[0][0])
    for expected, _, _ in A43[1:]:
        ksn = dukpt.tdes_next_ksn(ksn)
        assert ksn.hex().upper() == expected
    assert dukpt.tdes_next_ksn(IKSN) == tdes_ksn(1)


def test_tdes_ksn_rules():
    assert dukpt.tdes_ksn_is_valid(tdes_ksn(1))
    assert not dukpt.tdes_ksn_is_valid(IKSN)
    assert not dukpt.tdes_ksn_is_valid(tdes_ksn(0x7FF))  # 11 one-bits
    with pytest.raises(DukptError, match="more than 10 one-bits"):
        dukpt.tdes_transaction_key(BDK, tdes_ksn(0x7FF))
    with pytest.raises(DukptError, match="counter is 0"):
        dukpt.tdes_transaction_key(BDK, IKSN)
    with pytest.raises(DukptError, match="overflow"):
        dukpt.tdes_next_ksn(tdes_ksn(0x1FF800))  # last valid counter
    with pytest.raises(DukptError, match="10 bytes"):
        dukpt.tdes_ipek(BDK, IKSN[:9])
    with pytest.raises(DukptError, match="16 bytes"):
        dukpt.tdes_ipek(BDK[:8], IKSN)
    with pytest.raises(DukptError, match="usage must be one of"):
        dukpt.tdes_variant(IPEK, "cvv")


@given(st.integers(min_value=1, max_value=(1 << 21) - 1))
def test_tdes_next_ksn_properties(counter):
    ksn = tdes_ksn(counter)
    if not dukpt.tdes_ksn_is_valid(ksn):
        with pytest.raises(DukptError):
            dukpt.tdes_next_ksn(ksn)
        return
    try:
        nxt = dukpt.tdes_next_ksn(ksn)
    except DukptError:
        assert counter == 0x1FF800
        return
    assert dukpt.tdes_ksn_is_valid(nxt)
    assert nxt[:7] == ksn[:7] and int.from_bytes(nxt, "big") > int.from_bytes(ksn, "big")


def test_aes_initial_keys():
    # Source: ANSI X9.24-3:2017 B.1 (AES-128) and supplement (AES-256 BDK = BDK128 twice).
    assert dukpt.aes_initial_key(AES_BDK, IKID) == AES_IK
    assert dukpt.aes_initial_key(AES_BDK * 2, IKID) == AES_IK_256


@pytest.mark.parametrize("counter", sorted(AES_VECTORS))
def test_aes_working_keys_supplement(counter):
    # Source: ANSI X9.24-3:2017 supplement test vectors for the AES-128 BDK (derivation, PIN,
    # MAC generation and data encryption keys; encrypted format 4 PIN blocks).
    derivation, pin, mac, data, pin_block = AES_VECTORS[counter]
    ksn = aes_ksn(counter)
    assert dukpt.aes_derivation_key(AES_IK, ksn) == h(derivation)
    keys = dukpt.aes_working_keys(AES_BDK, ksn)
    assert keys["pin"] == h(pin)
    assert keys["mac_generate"] == h(mac)
    assert keys["data_encrypt"] == h(data)
    assert dukpt.aes_working_key(AES_BDK, ksn, "pin") == h(pin)
    pin_field = h("441234AAAAAAAAAA2F69ADDE2E9E7ACE")
    pan_field = encode_format4_pan_field("4111111111111111")
    assert format4_encipher(keys["pin"], pin_field, pan_field) == h(pin_block)
    assert len({keys[u] for u in keys}) == len(keys)
    assert aes_cmac(keys["mac_generate"], b"x") != aes_cmac(keys["mac_verify"], b"x")
    assert aes_cbc_encrypt(keys["data_encrypt"], bytes(16)) != bytes(16)


@pytest.mark.parametrize(("counter", "derivation"), sorted(AES_DERIVATION_ONLY.items()))
def test_aes_derivation_keys_rollover_and_last(counter, derivation):
    # Source: ANSI X9.24-3:2017 supplement (counters 1FFFE, 20000, 20001 and the last four).
    assert dukpt.aes_derivation_key(AES_IK, aes_ksn(counter)) == h(derivation)


def test_aes_ksn_rules_and_key_types():
    assert dukpt.aes_next_ksn(aes_ksn(0x1FFFE)) == aes_ksn(0x20000)  # 1FFFF has 17 one-bits
    assert not dukpt.aes_ksn_is_valid(aes_ksn(0x1FFFF))
    with pytest.raises(DukptError, match="more than 16 one-bits"):
        dukpt.aes_derivation_key(AES_IK, aes_ksn(0x1FFFF))
    with pytest.raises(DukptError, match="overflow"):
        dukpt.aes_next_ksn(aes_ksn(0xFFFF0000))
    with pytest.raises(DukptError, match="12 bytes"):
        dukpt.aes_working_key(AES_BDK, IKID, "pin")
    with pytest.raises(DukptError, match="usage 'cvv' unknown"):
        dukpt.aes_working_key(AES_BDK, aes_ksn(1), "cvv")
    with pytest.raises(DukptError, match="cannot be derived"):
        dukpt.aes_working_key(AES_BDK, aes_ksn(1), "pin", "AES256")
    tdes2 = dukpt.aes_working_key(AES_BDK, aes_ksn(1), "pin", "TDES2")
    assert len(tdes2) == 16
    assert len(dukpt.aes_working_key(AES_BDK * 2, aes_ksn(1), "data", "AES256")) == 32
    assert len(dukpt.aes_working_key(AES_BDK * 2, aes_ksn(1), "pin", "TDES3")) == 24
