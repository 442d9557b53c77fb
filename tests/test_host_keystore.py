"""Host key store: round trip, wrong master key, nothing in clear at rest, KCVs only in describe().

All keys here are TEST keys. The TDES KCV vector is the well-known test key
0123456789ABCDEFFEDCBA9876543210 whose KCV is 08D7B4 (e.g. the EFT Lab / BP-Tools key
calculator and many HSM manuals); the AES-CMAC KCV is cross-checked with `cryptography`'s CMAC.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from rig.host.keystore import (
    ENV_VAR,
    KeyStore,
    KeyStoreError,
    load_master_key,
    write_master_key,
)

MASTER = bytes(range(32))  # TEST master key
TEST_ZMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # TEST key, KCV 08D7B4
TEST_TPK = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")  # TEST key
TEST_BDK_AES = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")  # TEST key (X9.24-3 sample BDK)


def _filled(tmp_path):
    ks = KeyStore.create(tmp_path / "keys.json", MASTER)
    ks.put("zmk", TEST_ZMK, kind="zmk")
    ks.put("tpk:T0000001", TEST_TPK, kind="tpk")
    ks.put("bdk:aes", TEST_BDK_AES, kind="bdk-aes")
    return ks


def test_round_trip_across_reopen(tmp_path):
    _filled(tmp_path)
    ks = KeyStore.open(tmp_path / "keys.json", MASTER)
    assert ks.names() == ["bdk:aes", "tpk:T0000001", "zmk"]
    assert ks.get("zmk") == TEST_ZMK
    assert ks.get("tpk:T0000001") == TEST_TPK
    assert ks.get("bdk:aes") == TEST_BDK_AES
    assert ks.algorithm("bdk:aes") == "aes" and ks.algorithm("zmk") == "tdes"
    assert ks.kind("tpk:T0000001") == "tpk"


def test_replace_and_delete(tmp_path):
    ks = _filled(tmp_path)
    ks.put("zmk", TEST_TPK, kind="zmk")
    ks.delete("bdk:aes")
    again = KeyStore.open(tmp_path / "keys.json", MASTER)
    assert again.get("zmk") == TEST_TPK
    assert not again.has("bdk:aes")


def test_kcv_matches_published_vector_and_cmac(tmp_path):
    ks = _filled(tmp_path)
    assert ks.kcv("zmk") == "08D7B4"
    c = cmac.CMAC(algorithms.AES(TEST_BDK_AES))
    c.update(bytes(16))
    assert ks.kcv("bdk:aes") == c.finalize()[:5].hex().upper()


def test_wrong_master_key_is_a_clear_error(tmp_path):
    _filled(tmp_path)
    with pytest.raises(KeyStoreError, match="wrong master key") as exc:
        KeyStore.open(tmp_path / "keys.json", bytes(32))
    assert ENV_VAR in str(exc.value)
    assert MASTER.hex() not in str(exc.value)


def test_file_never_holds_a_key_in_clear(tmp_path):
    _filled(tmp_path)
    raw = (tmp_path / "keys.json").read_bytes()
    for secret in (TEST_ZMK, TEST_TPK, TEST_BDK_AES, MASTER):
        assert secret not in raw
        assert secret.hex().encode() not in raw.lower()
    assert not (tmp_path / "keys.json.tmp").exists()
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0


def test_describe_shows_kcvs_only(tmp_path):
    ks = _filled(tmp_path)
    rows = ks.describe()
    assert [r["name"] for r in rows] == ["bdk:aes", "tpk:T0000001", "zmk"]
    assert {r["name"]: r["kcv"] for r in rows}["zmk"] == "08D7B4"
    assert set(rows[0]) == {"name", "kind", "algorithm", "length", "kcv"}
    text = json.dumps(rows).lower()
    for secret in (TEST_ZMK, TEST_TPK, TEST_BDK_AES):
        assert secret.hex() not in text
    assert "keys.json" in repr(ks) and TEST_ZMK.hex() not in repr(ks).lower()


def test_tampered_entry_fails_authentication(tmp_path):
    _filled(tmp_path)
    path = tmp_path / "keys.json"
    doc = json.loads(path.read_text())
    doc["keys"]["zmk"]["kind"] = "tpk"  # relabelling breaks the GCM associated data
    doc["keys"]["tpk:T0000001"]["ct"] = doc["keys"]["zmk"]["ct"]
    path.write_text(json.dumps(doc))
    ks = KeyStore.open(path, MASTER)
    with pytest.raises(KeyStoreError, match=r"'zmk'.*authentication"):
        ks.get("zmk")
    with pytest.raises(KeyStoreError, match="tpk:T0000001"):
        ks.get("tpk:T0000001")


def test_bad_inputs_name_the_fix(tmp_path):
    ks = _filled(tmp_path)
    with pytest.raises(KeyStoreError, match="no key named 'tak:X'"):
        ks.get("tak:X")
    with pytest.raises(KeyStoreError, match="put 'aes' in the kind"):
        ks.put("tak:T1", bytes(32), kind="tak")
    with pytest.raises(KeyStoreError, match="already exists"):
        KeyStore.create(tmp_path / "keys.json", MASTER)
    with pytest.raises(KeyStoreError, match="32 bytes"):
        KeyStore.create(tmp_path / "other.json", b"short")
    with pytest.raises(KeyStoreError, match="does not exist"):
        KeyStore.open(tmp_path / "missing.json", MASTER)
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(KeyStoreError, match="not JSON"):
        KeyStore.open(tmp_path / "junk.json", MASTER)


def test_master_key_from_file_or_env(tmp_path, monkeypatch):
    key = write_master_key(tmp_path / "master.key")
    assert len(key) == 32
    assert load_master_key(tmp_path / "master.key") == key
    assert (tmp_path / "master.key").stat().st_mode & 0o077 == 0
    with pytest.raises(KeyStoreError, match="already exists"):
        write_master_key(tmp_path / "master.key")
    monkeypatch.setenv(ENV_VAR, MASTER.hex())
    assert load_master_key(None) == MASTER
    monkeypatch.setenv(ENV_VAR, "abcd")
    with pytest.raises(KeyStoreError, match=r"\$POSRIG_HOST_MASTER_KEY is 2 bytes"):
        load_master_key(None)
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(KeyStoreError, match=f"master key file path or set {ENV_VAR}"):
        load_master_key(None)
    with pytest.raises(KeyStoreError, match="does not exist"):
        load_master_key(tmp_path / "nope.key")
