"""The EMV card's persistent side: offline PIN (plaintext and enciphered) with the try counter
kept in a state file, issuer scripts under secure messaging (MACs built with the rig and with
pyemv), blocking, and the risk profiles' card-level behaviour. TEST keys, PANs and PINs only.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from emv_card_helpers import PROFILES, apdu, cdol_data, genac, ok, select, start, sw
from pyemv import cvn as pyemv_cvn

from rig.card.emv_app import EmvCardApplication
from rig.card.emv_state import CardState, CardStateError
from rig.crypto import arqc
from rig.crypto.secure_messaging import command_mac, visa_sm_session_key
from rig.profiles import issuer_keys

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

GOOD = bytes.fromhex("241234FFFFFFFFFF")  # format 2 block of the profiles' TEST PIN 1234
BAD = bytes.fromhex("241111FFFFFFFFFF")


def _card(profile_id: str, state_file: Path) -> EmvCardApplication:
    profile = PROFILES[profile_id]
    card = EmvCardApplication(profile, state=CardState.load(state_file, profile))
    select(card, profile.applications[0].aid)
    return card


def test_plaintext_pin_counts_down_blocks_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = _card("mc-sda-offline-plaintext-pin", path)
    assert sw(card, apdu("00200080", GOOD, le=False)) == 0x9000
    assert sw(card, apdu("00200080", BAD, le=False)) == 0x63C2
    card = _card("mc-sda-offline-plaintext-pin", path)
    assert ok(card, apdu("80CA9F17")) == bytes.fromhex("9F170102")
    assert sw(card, apdu("00200080", BAD, le=False)) == 0x63C1
    assert sw(card, apdu("00200080", BAD, le=False)) == 0x63C0
    card = _card("mc-sda-offline-plaintext-pin", path)
    assert sw(card, apdu("00200080", GOOD, le=False)) == 0x6983
    assert json.loads(path.read_text())["pin_try_counter"] == 0
    assert sw(card, apdu("00200080", GOOD[:4], le=False)) == 0x6983
    fresh = _card("mc-sda-offline-plaintext-pin", tmp_path / "other.json")
    assert sw(fresh, apdu("00200080", bytes.fromhex("2412FFFFFFFFFFFF"), le=False)) == 0x6A80
    assert sw(fresh, apdu("00200080", GOOD[:4], le=False)) == 0x6700


def test_atc_persists_between_sessions(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    for expected in (2, 3):
        card, _, _ = start("visa-signature", state=CardState.load(path, PROFILES["visa-signature"]))
        assert ok(card, apdu("80CA9F36"))[-2:] == expected.to_bytes(2, "big")


def test_state_file_errors_name_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_text("{not json")
    with pytest.raises(CardStateError, match="delete"):
        CardState.load(path, PROFILES["visa-signature"])
    CardState.fresh(PROFILES["visa-signature"], path).save()
    with pytest.raises(CardStateError, match="own state file"):
        CardState.load(path, PROFILES["visa-expired"])
    data = json.loads(path.read_text())
    data["apps"]["A0000000031010"]["atc"] = "x"
    path.write_text(json.dumps(data))
    with pytest.raises(CardStateError, match="atc"):
        CardState.load(path, PROFILES["visa-signature"])


def _enciphered_pin(card: EmvCardApplication, block: bytes, challenge: bytes) -> bytes:
    """Book 2 §7.1: 7F || PIN block || ICC unpredictable number || random pad, RSA with the ICC
    public key (the profile's public part: modulus and exponent)."""
    key = card.profile.applications[0].crypto.icc_private_key
    assert key is not None
    n, e = int(key.modulus, 16), int(key.exponent, 16)
    size = (n.bit_length() + 7) // 8
    plain = b"\x7f" + block + challenge + secrets.token_bytes(size - 17)
    return pow(int.from_bytes(plain, "big"), e, n).to_bytes(size, "big")


def test_enciphered_pin_needs_a_challenge_and_verifies() -> None:
    card = _card("visa-offline-enciphered-pin", Path("/nonexistent/never-written.json"))
    card.state.path = None
    challenge = ok(card, apdu("00840000"))
    assert sw(card, apdu("00200088", _enciphered_pin(card, GOOD, challenge), le=False)) == 0x9000
    assert sw(card, apdu("00200088", _enciphered_pin(card, GOOD, challenge), le=False)) == 0x6985
    stale = _enciphered_pin(card, GOOD, challenge)
    ok(card, apdu("00840000"))
    assert sw(card, apdu("00200088", stale, le=False)) == 0x6A80
    challenge = ok(card, apdu("00840000"))
    assert sw(card, apdu("00200088", _enciphered_pin(card, BAD, challenge), le=False)) == 0x63C2


def test_risk_profiles_behave_as_expected_at_the_card() -> None:
    card, tags, _ = start("mc-force-decline")
    assert genac(card, 0x80, cdol_data(tags[0x8C]))[0x9F27] == b"\x00"
    card, tags, _ = start("visa-expired")
    assert genac(card, 0x00, cdol_data(tags[0x8C]))[0x9F27] == b"\x00"
    card, tags, _ = start("visa-not-yet-effective")
    assert genac(card, 0x40, cdol_data(tags[0x8C]))[0x9F27] == b"\x80"
    card, tags, _ = start("visa-pin-try-exceeded")
    assert ok(card, apdu("80CA9F17")) == bytes.fromhex("9F170100")
    assert sw(card, apdu("00200080", GOOD, le=False)) == 0x6983
    blocked = PROFILES["visa-app-blocked"]
    card = EmvCardApplication(blocked)
    assert select(card, blocked.applications[0].aid)[-2:] == b"\x62\x83"
    card, tags, _ = start("visa-app-blocked")
    assert genac(card, 0x80, cdol_data(tags[0x8C]))[0x9F27] == b"\x00"


def test_offline_approval_only_within_the_consecutive_limit() -> None:
    profile = PROFILES["visa-no-cvm-under-floor"]
    state = CardState.fresh(profile)
    cids = []
    for _ in range(profile.risk.lower_consecutive_offline_limit + 1):
        card, tags, _ = start(profile.id, state=state)
        cids.append(genac(card, 0x40, cdol_data(tags[0x8C]))[0x9F27])
    assert cids == [b"\x40"] * profile.risk.lower_consecutive_offline_limit + [b"\x80"]
    card, tags, _ = start("visa-signature")
    assert genac(card, 0x40, cdol_data(tags[0x8C]))[0x9F27] == b"\x80"


def _online(profile_id: str, state: CardState) -> tuple[EmvCardApplication, bytes, bytes]:
    card, tags, _ = start(profile_id, state=state)
    answer = genac(card, 0x80, cdol_data(tags[0x8C]))
    return card, answer[0x9F26], answer[0x9F36]


def test_put_data_script_with_good_mac_applies_and_bad_mac_is_refused(tmp_path: Path) -> None:
    profile = PROFILES["visa-issuer-script"]
    state = CardState.load(tmp_path / "card.json", profile)
    card, ac, atc = _online(profile.id, state)
    keys = issuer_keys(profile)[0]
    ref = pyemv_cvn.VisaCVN18(keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    script = profile.applications[0].issuer_scripts[0]
    value = bytes.fromhex(script.data["9F14"])
    header = bytes.fromhex("04DA9F14") + bytes((len(value) + 8,))
    mac = ref.generate_command_mac(header, ac, atc, value)
    mk_smi = arqc.icc_master_key(keys.cvn, keys.imk_smi, keys.pan, keys.psn)
    assert mac == command_mac(visa_sm_session_key(mk_smi, atc), header, atc, ac, value)
    bad = bytes([mac[0] ^ 0x80]) + mac[1:]
    assert sw(card, header + value + bad) == 0x6988
    assert ok(card, apdu("80CA9F14")) == bytes.fromhex("9F140100")
    assert sw(card, header + value + mac) == 0x9000
    assert ok(card, apdu("80CA9F14")) == bytes.fromhex("9F140105")
    again = CardState.load(tmp_path / "card.json", profile)
    assert again.apps["A0000000031010"].data == {"9F14": "05"}
    assert again.apps["A0000000031010"].script_counter == 1


def test_script_needs_an_arqc_in_the_session() -> None:
    card, _, _ = start("visa-issuer-script")
    assert sw(card, bytes.fromhex("04DA9F1409") + bytes(9)) == 0x6985


def test_application_block_and_unblock_scripts_persist(tmp_path: Path) -> None:
    profile = PROFILES["mc-dual-interface"]
    path = tmp_path / "card.json"
    keys = issuer_keys(profile)[0]
    ref = pyemv_cvn.MasterCardCVN16(keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    card, ac, atc = _online(profile.id, CardState.load(path, profile))
    header = bytes.fromhex("841E000008")
    assert sw(card, header + ref.generate_command_mac(header, ac, atc)) == 0x9000
    card = EmvCardApplication(profile, state=CardState.load(path, profile))
    assert select(card, profile.applications[0].aid)[-2:] == b"\x62\x83"
    card, ac, atc = _online(profile.id, CardState.load(path, profile))
    header = bytes.fromhex("8418000008")
    assert sw(card, header + ref.generate_command_mac(header, ac, atc)) == 0x9000
    card = EmvCardApplication(profile, state=CardState.load(path, profile))
    assert select(card, profile.applications[0].aid)[-2:] == b"\x90\x00"


@pytest.mark.parametrize(
    ("profile_id", "cls"),
    [("visa-issuer-script", pyemv_cvn.VisaCVN18), ("mc-dual-interface", pyemv_cvn.MasterCardCVN16)],
)
def test_pin_change_script_from_pyemv_sets_the_new_pin(profile_id: str, cls: type) -> None:
    profile = PROFILES[profile_id]
    state = CardState.fresh(profile)
    state.pin_try_counter = 1
    card, ac, atc = _online(profile_id, state)
    keys = issuer_keys(profile)[0]
    ref = cls(keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    assert sw(card, ref.generate_pin_change_command("98765", ac, atc)) == 0x9000
    assert state.pin == "98765" and state.pin_try_counter == profile.risk.pin_try_limit
    assert sw(card, apdu("00200080", GOOD, le=False)) == 0x63C2
    assert sw(card, apdu("00200080", bytes.fromhex("2598765FFFFFFFFF"), le=False)) == 0x9000
