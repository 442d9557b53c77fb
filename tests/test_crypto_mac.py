"""MACs: ISO 9797-1 algorithms 1 and 3, AES-CMAC and TDES-CMAC (rig.crypto.mac). Test keys only."""

from __future__ import annotations

import warnings

import psec
import pyemv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.crypto.mac import aes_cmac, mac_alg1, mac_alg3, pad_method1, pad_method2, tdes_cmac
from rig.crypto.primitives import CryptoError

h = bytes.fromhex
NIST_MSG = h(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def test_padding_methods():
    assert pad_method1(h("1234")) == h("1234000000000000")
    assert pad_method1(b"") == bytes(8)
    assert pad_method1(bytes(8)) == bytes(8)
    assert pad_method2(h("1234")) == h("1234800000000000")
    assert pad_method2(bytes(8)) == bytes(8) + h("8000000000000000")
    assert pad_method2(b"", 16) == h("80") + bytes(15)


def test_fips113_cbc_mac_single_des():
    # Source: FIPS 113 / ANSI X9.9 example, key 0123456789ABCDEF, "7654321 Now is the time for ".
    mac = mac_alg1(h("0123456789ABCDEF"), b"7654321 Now is the time for ", 1, "des")
    assert mac == h("F1D30F6849312CA4")


@pytest.mark.parametrize(
    ("data", "padding", "expected"),
    [
        (b"Now is the time for all ", 1, "A1C72E74EA3FA9B6"),
        (b"Now is the time for all ", 2, "E9086230CA3BE796"),
        (b"Now is the time for it", 1, "2E2B1428CC78254F"),
    ],
)
def test_retail_mac_iso9797_1_annex_b(data, padding, expected):
    # Source: ISO/IEC 9797-1:2011 Annex B.4 (MAC algorithm 3), K||K' = 0123...EF FEDC...10;
    # the padding-1 value is also the ANSI X9.19 published example.
    assert mac_alg3(h("0123456789ABCDEFFEDCBA9876543210"), data, padding) == h(expected)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ],
)
def test_aes_cmac_sp800_38b(length, expected):
    # Source: NIST SP 800-38B Appendix D.1 (AES-128 examples 1-4).
    assert aes_cmac(h("2b7e151628aed2a6abf7158809cf4f3c"), NIST_MSG[:length]) == h(expected)


@pytest.mark.parametrize(
    ("key", "length", "expected"),
    [
        ("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 0, "b7a688e122ffaf95"),
        ("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 8, "8e8f293136283797"),
        ("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 20, "743ddbe0ce2dc2ed"),
        ("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", 32, "33e6b1092400eae5"),
        ("4cf15134a2850dd58a3d10ba80570d38", 0, "bd2ebf9a3ba00361"),
        ("4cf15134a2850dd58a3d10ba80570d38", 32, "31b1e431dabc4eb8"),
    ],
)
def test_tdes_cmac_sp800_38b(key, length, expected):
    # Source: NIST SP 800-38B Appendix D.2 (three-key) and D.3 (two-key TDEA examples).
    assert tdes_cmac(h(key), NIST_MSG[:length]) == h(expected)


@settings(max_examples=50)
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=64), st.sampled_from([1, 2]))
def test_retail_mac_matches_psec_and_pyemv(key, data, padding):
    ours = mac_alg3(key, data, padding)
    assert ours == quiet(psec.mac.generate_retail_mac, key[:8], key[8:], data, padding)
    assert ours == quiet(pyemv.mac.mac_iso9797_3, key[:8], key[8:], data, padding)


@settings(max_examples=50)
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=64), st.sampled_from([1, 2]))
def test_cbc_mac_matches_psec(key, data, padding):
    assert mac_alg1(key, data, padding) == quiet(psec.mac.generate_cbc_mac, key, data, padding)


def test_mac_errors():
    with pytest.raises(CryptoError, match="padding must be 1 or 2"):
        mac_alg3(bytes(16), b"x", 3)
    with pytest.raises(CryptoError, match="key must be 16 bytes"):
        mac_alg3(bytes(8), b"x")
    with pytest.raises(CryptoError, match="DES key must be 8 bytes"):
        mac_alg1(bytes(16), b"x", 1, "des")
    with pytest.raises(CryptoError, match="block must be"):
        mac_alg1(bytes(16), b"x", 1, "aes")  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="AES key must be"):
        aes_cmac(bytes(8), b"x")
