"""Card issuer master keys (EMV IMKs, purse master keys) live in the host's encrypted key store:
imported by `rig host init` (KCVs shown, never keys), imported at start for a profile added
later, resolved once per profile, and a store that disagrees with its profile stops the host
with one clear error. TEST KEYS and TEST PANs only."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rig.crypto.keys import kcv_tdes
from rig.host.cli import app, init_data
from rig.host.control import ControlError, HostProcess
from rig.host.issuer import Issuer
from rig.host.keystore import (
    KeyStore,
    emv_key_name,
    issuer_key_material,
    load_master_key,
    purse_key_name,
)
from rig.host.server import HostError
from rig.host.terminal import TerminalClient, chip_authorization
from rig.iso8583 import messages as m
from rig.prepaid import purse
from rig.profiles import load_all

runner = CliRunner()
PROFILES = load_all("cardprofiles")
CHIP = "visa-signature"
LATE = "mc-debit-cda"
PURSE_ID = "prepaid-purse"
TID = "TERM0001"
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ALL_MATERIAL = [key for p in PROFILES.values() for _, _, key in issuer_key_material(p)]


def _folder(tmp_path: Path, name: str, ids: list[str]) -> Path:
    """A card profile folder holding copies of the named profiles."""
    folder = tmp_path / name
    folder.mkdir()
    for pid in ids:
        shutil.copy(Path("cardprofiles") / f"{pid}.yaml", folder)
    return folder


def _open(data: Path) -> KeyStore:
    return KeyStore.open(data / "keys.store", load_master_key(data / "master.key"))


def _assert_no_clear_key(text: str) -> None:
    for key in ALL_MATERIAL:
        assert key.hex().upper() not in text and key.hex().lower() not in text


def test_init_stores_issuer_master_keys_encrypted_and_shows_kcvs(tmp_path: Path) -> None:
    data = tmp_path / "d"
    result = runner.invoke(
        app, ["init", "--data", str(data), "--profiles", "cardprofiles", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert set(info["issuer_keys"]) == set(PROFILES) - {"magstripe-only"}
    rows = {r["name"]: r for rows in info["issuer_keys"].values() for r in rows}
    for profile in PROFILES.values():
        for name, kind, key in issuer_key_material(profile):
            assert rows[name] == {"name": name, "kind": kind, "kcv": kcv_tdes(key).hex().upper()}
    assert {"imk_ac:visa-signature:0", "imk_smc:visa-signature:0", "purse_mtk:prepaid-purse"} <= (
        {k["name"] for k in info["keys"]}
    )
    _assert_no_clear_key(result.output)
    _assert_no_clear_key((data / "keys.store").read_text())
    store = _open(data)
    imk = bytes.fromhex(PROFILES[CHIP].applications[0].crypto.imk_ac)
    assert store.get(emv_key_name("imk_ac", CHIP, 0)) == imk

    human = runner.invoke(
        app, ["init", "--data", str(tmp_path / "h"), "--profiles", "cardprofiles"]
    )
    assert human.exit_code == 0, human.output
    assert f"imk_ac:0 KCV {kcv_tdes(imk).hex().upper()}" in human.output
    _assert_no_clear_key(human.output)


def test_keys_command_lists_kcvs_and_names_an_unknown_profile(tmp_path: Path) -> None:
    data = tmp_path / "d"
    init_data(data, profiles=_folder(tmp_path, "p", [CHIP]))
    listing = runner.invoke(app, ["keys", "--data", str(data), "--json"])
    assert listing.exit_code == 0, listing.output
    kcvs = {k["name"]: k["kcv"] for k in json.loads(listing.output)["keys"]}
    imk = bytes.fromhex(PROFILES[CHIP].applications[0].crypto.imk_ac)
    assert kcvs[emv_key_name("imk_ac", CHIP, 0)] == kcv_tdes(imk).hex().upper()
    _assert_no_clear_key(listing.output)
    bad = runner.invoke(app, ["keys", "--data", str(data), "--reimport", "no-such-card"])
    assert bad.exit_code == 2
    assert "no card profile 'no-such-card'" in bad.output and "Traceback" not in bad.output


def test_arqc_is_verified_with_the_resolved_store_key(tmp_path: Path) -> None:
    store = KeyStore.create(tmp_path / "keys.store", bytes(range(32)))
    issuer = Issuer(PROFILES, store, None)
    req = chip_authorization(PROFILES[CHIP], stan=1, terminal_id=TID)
    pan = req["2"]
    name = emv_key_name("imk_ac", CHIP, 0)
    assert issuer.by_pan[pan].imk_ac == store.get(name)
    assert issuer.decide(dict(req)).rc == "00"
    # The profile still holds the right key; only the key the issuer resolved is changed.
    wrong = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    issuer.by_pan[pan] = dataclasses.replace(issuer.by_pan[pan], imk_ac=wrong)
    d = issuer.decide(dict(req))
    assert d.rc == "05" and any("failed" in n for n in d.notes), d.notes


def _load_request(issuer_purse) -> dict[str, str]:
    keys = purse.PurseKeys.from_master_keys(
        *(bytes.fromhex(k) for k in (issuer_purse.keys.mlk, issuer_purse.keys.mpk,
                                     issuer_purse.keys.mtk)),
        bytes.fromhex(issuer_purse.asn),
    )  # fmt: skip
    card = purse.Purse(keys, balance=issuer_purse.initial_balance, max_balance=10**8)
    tid = bytes.fromhex("112233445566")
    init = card.initialize_for_load(2000, tid, bytes.fromhex("01020304"))
    sub = {
        "01": issuer_purse.asn,
        "02": f"{init.online_counter:04X}",
        "03": f"{init.balance:012d}",
        "04": "LOAD",
        "05": init.mac1.hex().upper(),
        "09": init.random.hex().upper(),
        "10": tid.hex().upper(),
    }
    return m.purchase(
        prepaid=m.private_encode(sub), amount=2000, stan=6, terminal_id=TID,
        merchant_id="MERCHANT0000001", entry_mode="051", now=NOW,
    )  # fmt: skip


def test_purse_mac1_is_verified_with_the_resolved_store_keys(tmp_path: Path) -> None:
    store = KeyStore.create(tmp_path / "keys.store", bytes(range(32)))
    req = _load_request(PROFILES[PURSE_ID].purse)
    issuer = Issuer(PROFILES, store, None, now=lambda: NOW)
    held = tuple(store.get(purse_key_name(k, PURSE_ID)) for k in ("mlk", "mpk", "mtk"))
    assert issuer.purse_master_keys[PURSE_ID] == held
    assert issuer.decide(dict(req)).rc == "00"
    other = Issuer(PROFILES, store, None, now=lambda: NOW)
    other.purse_master_keys[PURSE_ID] = (bytes(range(16)),) * 3
    d = other.decide(dict(req))
    assert d.rc == "63" and "MAC1 does not verify" in d.notes


def test_profile_added_after_init_is_imported_at_start(tmp_path: Path) -> None:
    data = tmp_path / "d"
    folder = _folder(tmp_path, "p", [CHIP])
    init_data(data, [TID], profiles=folder)
    assert not _open(data).has(emv_key_name("imk_ac", LATE, 0))
    shutil.copy(Path("cardprofiles") / f"{LATE}.yaml", folder)
    host = HostProcess(data, "--listen", "127.0.0.1:0", "--profiles", str(folder))
    try:
        req = chip_authorization(PROFILES[LATE], stan=7, terminal_id=TID)
        with TerminalClient(host.listener("len2"), "len2") as client:
            assert client.exchange(req, 5)["39"] == "00"
    finally:
        assert host.stop() == 0
    store = _open(data)
    imk = bytes.fromhex(PROFILES[LATE].applications[0].crypto.imk_ac)
    assert store.get(emv_key_name("imk_ac", LATE, 0)) == imk
    log = (data / "host.log").read_text()
    lines = [line for line in log.splitlines() if "issuer keys imported" in line]
    assert len(lines) == 1 and f"card profile {LATE}:" in lines[0], lines
    assert f"imk_ac:{LATE}:0 KCV {kcv_tdes(imk).hex().upper()}" in lines[0]
    _assert_no_clear_key(log)
    _assert_no_clear_key((data / "keys.store").read_text())


def test_a_changed_profile_stops_the_host_with_one_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "d"
    folder = _folder(tmp_path, "p", [CHIP])
    init_data(data, [TID], profiles=folder)
    path = folder / f"{CHIP}.yaml"
    old = PROFILES[CHIP].applications[0].crypto.imk_ac
    new = "0123456789ABCDEFFEDCBA9876543210"  # TEST KEY: the profile "re-generated"
    path.write_text(path.read_text().replace(old, new))
    try:
        started = HostProcess(data, "--listen", "127.0.0.1:0", "--profiles", str(folder))
    except ControlError as err:
        text = str(err)
    else:
        started.stop()
        pytest.fail("the host started with a key store that differs from its card profile")
    name = emv_key_name("imk_ac", CHIP, 0)
    assert f"card profile '{CHIP}' key {name}" in text
    assert f"--reimport {CHIP}" in text and "Traceback" not in text
    old_kcv = kcv_tdes(bytes.fromhex(old)).hex().upper()
    assert f"store KCV {old_kcv}, profile KCV {kcv_tdes(bytes.fromhex(new)).hex().upper()}" in text
    assert old not in text and new not in text

    changed = load_all(folder)
    with pytest.raises(HostError, match=name):
        Issuer(changed, _open(data), None)
    fix = runner.invoke(
        app, ["keys", "--data", str(data), "--reimport", CHIP, "--profiles", str(folder)]
    )
    assert fix.exit_code == 0, fix.output
    assert f"imk_ac:0 KCV {kcv_tdes(bytes.fromhex(new)).hex().upper()}" in fix.output
    issuer = Issuer(changed, _open(data), None)
    req = chip_authorization(changed[CHIP], stan=3, terminal_id=TID)
    assert issuer.decide(dict(req)).rc == "00", "the ARQC under the new key verifies"
    assert issuer.decide(chip_authorization(PROFILES[CHIP], stan=4, terminal_id=TID)).rc == "05"
