"""Card profiles: every shipped profile loads, its certificate chain verifies against the test CA
CAPK set (the bad-ODA profile must not), its keys give ARQCs pyemv agrees with, and malformed
profiles fail with one ProfileError naming the key path. All keys and PANs are TEST material.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import cvn as pyemv_cvn

from rig.crypto import arqc, oda
from rig.profiles import ProfileError, issuer_keys, load_all, load_capks, load_profile
from rig.profiles.load import parse_profile
from rig.profiles.model import CardProfile, luhn_ok

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent / "cardprofiles"
PROFILES = load_all(ROOT)
CAPKS = load_capks(ROOT / "capk")
REQUIRED = {
    "visa-credit-online-pin-dda", "mc-sda-offline-plaintext-pin", "mc-debit-cda",
    "unionpay-debit-pboc", "visa-no-cvm-under-floor", "visa-signature",
    "visa-offline-enciphered-pin", "visa-expired", "visa-not-yet-effective",
    "visa-pin-try-exceeded", "visa-app-blocked", "visa-chip-fallback", "magstripe-only",
    "visa-contactless-only", "mc-force-decline", "visa-issuer-script", "visa-bad-oda",
    "prepaid-purse",
}  # fmt: skip
ODA_APPS = [
    (pid, app) for pid, p in PROFILES.items() for app in p.applications if app.crypto.oda != "none"
]


def test_every_required_profile_ships_and_states_its_outcome() -> None:
    assert set(PROFILES) >= REQUIRED
    assert len(PROFILES) >= 16
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for pid, profile in PROFILES.items():
        assert profile.test_material is True
        assert profile.purpose.strip() and profile.expected.strip()
        assert f"`{pid}`" in readme, f"{pid} missing from cardprofiles/README.md"
        for app in profile.applications:
            assert luhn_ok(app.pan)


def test_capk_checksums_follow_book2() -> None:
    """EMV Book 2 §11.2.2: check sum = SHA-1(RID || index || modulus || exponent)."""
    data = yaml.safe_load((ROOT / "capk" / "test-ca.yaml").read_text(encoding="utf-8"))
    assert data["test_material"] is True
    for entry in data["keys"]:
        raw = bytes.fromhex(entry["rid"] + entry["index"] + entry["modulus"] + entry["exponent"])
        assert hashlib.sha1(raw).hexdigest().upper() == entry["checksum"]
    assert {rid for rid, _ in CAPKS} == {"A000000003", "A000000004", "A000000333"}


def test_capk_with_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "capk" / "test-ca.yaml").read_text(encoding="utf-8"))
    data["keys"][0]["checksum"] = "00" * 20
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"bad.yaml: keys.0: checksum does not match"):
        load_capks(tmp_path)


def _recover_chain(app):
    c = app.crypto
    capk = CAPKS[(app.aid[:10], int(c.capk_index, 16))]
    issuer = oda.recover_issuer_key(
        capk.modulus,
        capk.exponent,
        bytes.fromhex(c.issuer_certificate),
        bytes.fromhex(c.issuer_remainder),
        bytes.fromhex(c.issuer_exponent),
        pan=app.pan,
    )
    static = app.static_data()
    if c.oda == "sda":
        dac = oda.verify_static_data(issuer, bytes.fromhex(c.signed_static_data), static)
        assert dac == bytes.fromhex(c.dac)
        return
    icc = oda.recover_icc_key(
        issuer,
        bytes.fromhex(c.icc_certificate),
        bytes.fromhex(c.icc_remainder),
        bytes.fromhex(c.icc_exponent),
        static,
        pan=app.pan,
    )
    pair = c.icc_private_key.key_pair()
    assert (icc.modulus, icc.exponent) == (pair.public.modulus, pair.public.exponent)
    sdad = oda.sign_dynamic_data(pair, oda.dda_dynamic_data(b"\x12\x34"), b"\xde\xad\xbe\xef")
    assert oda.verify_dynamic_data(icc, sdad, b"\xde\xad\xbe\xef") == b"\x02\x12\x34"


@pytest.mark.parametrize(("pid", "app"), ODA_APPS, ids=[p for p, _ in ODA_APPS])
def test_oda_chain_recovers_with_the_capk(pid, app) -> None:
    assert app.crypto.oda in ("sda", "dda", "cda")
    if app.crypto.oda_invalid:
        with pytest.raises(oda.OdaError):
            _recover_chain(app)
    else:
        _recover_chain(app)


def test_oda_methods_are_all_covered() -> None:
    methods = {app.crypto.oda for _, app in ODA_APPS}
    assert methods == {"sda", "dda", "cda"}
    assert [pid for pid, app in ODA_APPS if app.crypto.oda_invalid] == ["visa-bad-oda"]


def test_record_edit_breaks_the_sda_signature() -> None:
    """The SSAD covers the ODA records: changing one byte of them must fail verification."""
    app = PROFILES["mc-sda-offline-plaintext-pin"].applications[0]
    capk = CAPKS[(app.aid[:10], 0xF1)]
    c = app.crypto
    issuer = oda.recover_issuer_key(
        capk.modulus, capk.exponent, bytes.fromhex(c.issuer_certificate),
        bytes.fromhex(c.issuer_remainder), bytes.fromhex(c.issuer_exponent),
    )  # fmt: skip
    static = bytearray(app.static_data())
    static[5] ^= 1
    with pytest.raises(oda.OdaError, match="hash"):
        oda.verify_static_data(issuer, bytes.fromhex(c.signed_static_data), bytes(static))


def test_arqc_with_profile_keys_verifies_with_pyemv() -> None:
    """The Visa CVN 18 ARQC from the profile's IMK-AC equals pyemv's (independent library)."""
    profile = PROFILES["visa-credit-online-pin-dda"]
    keys = issuer_keys(profile)[0]
    assert keys.cvn == "visa-18"
    tags = {
        "9F02": bytes.fromhex("000000001000"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0250"),
        "95": bytes(5),
        "5F2A": bytes.fromhex("0978"),
        "9A": bytes.fromhex("250101"),
        "9C": b"\x00",
        "9F37": bytes.fromhex("11223344"),
        "82": bytes.fromhex(profile.applications[0].aip),
        "9F36": bytes.fromhex("0001"),
        "9F10": bytes.fromhex("06011203A00000"),
    }
    mk = arqc.icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
    ac = arqc.generate_ac(keys.cvn, mk, tags)
    ref = pyemv_cvn.VisaCVN18(keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    pyemv_tags = {f"tag_{k.lower()}": v for k, v in tags.items() if k != "9F10"}
    assert ac == ref.generate_ac(**pyemv_tags, tag_9f10=tags["9F10"])
    assert arqc.verify_arqc(keys.cvn, mk, tags, ac)


def test_issuer_keys_cover_every_emv_profile() -> None:
    for profile in PROFILES.values():
        keys = issuer_keys(profile)
        assert len(keys) == len(profile.applications)
        for k in keys:
            assert len(k.imk_ac) == len(k.imk_smi) == len(k.imk_smc) == 16
            assert "TEST KEY" in next(
                a.crypto.key_label for a in profile.applications if a.aid == k.aid
            )
    assert issuer_keys(PROFILES["prepaid-purse"]) == []


def test_unionpay_profile_uses_pboc() -> None:
    app = PROFILES["unionpay-debit-pboc"].applications[0]
    assert (app.aid, app.crypto.cvn) == ("A000000333010101", "pboc-01")


# --- malformed profiles ---------------------------------------------------------------------


def _base() -> dict:
    text = (ROOT / "visa-signature.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _error(data: dict) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(yaml.safe_dump(data), "case.yaml")
    return str(info.value)


def test_unknown_key_is_named_with_valid_keys() -> None:
    data = _base()
    data["applications"][0]["colour"] = "red"
    msg = _error(data)
    assert "case.yaml: applications.0.colour: unknown key" in msg
    assert "valid keys here:" in msg and "aid" in msg


def test_bad_luhn_pan_is_named() -> None:
    data = _base()
    pan = data["applications"][0]["pan"]
    data["applications"][0]["pan"] = pan[:-1] + str((int(pan[-1]) + 1) % 10)
    assert "case.yaml: applications.0.pan: " in _error(data)
    assert "Luhn" in _error(data)


def test_expiry_before_effective_is_refused() -> None:
    data = _base()
    data["applications"][0]["effective"] = data["applications"][0]["expiry"]
    msg = _error(data)
    assert "case.yaml: applications.0:" in msg and "must be after effective" in msg


@pytest.mark.parametrize("value", [None, False])
def test_test_material_is_required(value) -> None:
    data = _base()
    if value is None:
        del data["test_material"]
        assert "case.yaml: test_material: required key is missing" in _error(data)
    else:
        data["test_material"] = value
        assert "case.yaml: test_material:" in _error(data)


def test_oda_method_needs_its_certificates_and_aip() -> None:
    data = yaml.safe_load((ROOT / "visa-credit-online-pin-dda.yaml").read_text(encoding="utf-8"))
    del data["applications"][0]["crypto"]["icc_certificate"]
    assert "applications.0.crypto: " in _error(data)
    assert "oda dda needs icc_certificate" in _error(data)
    data = yaml.safe_load((ROOT / "visa-credit-online-pin-dda.yaml").read_text(encoding="utf-8"))
    data["applications"][0]["aip"] = "1C00"
    assert "does not set dda_supported" in _error(data)


def test_unknown_cvn_and_purse_without_section() -> None:
    data = _base()
    data["applications"][0]["crypto"]["cvn"] = "visa-99"
    assert "applications.0.crypto.cvn: unknown CVN 'visa-99'" in _error(data)
    purse = yaml.safe_load((ROOT / "prepaid-purse.yaml").read_text(encoding="utf-8"))
    del purse["purse"]
    assert "kind purse needs a purse section" in _error(purse)


def test_unquoted_hex_number_gets_a_fix() -> None:
    data = _base()
    data["applications"][0]["psn"] = 1
    assert "applications.0.psn: " in _error(data) and "quote it" in _error(data)


def test_load_all_names_each_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("id: a\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("[unclosed", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_all(tmp_path)
    assert "a.yaml: title: required key is missing" in str(info.value)
    assert "b.yaml: line" in str(info.value)


def test_load_profile_of_a_missing_file() -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(ROOT / "no-such-profile.yaml")


yamlish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.floats(),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_random_text_gives_only_profile_error(text: str) -> None:
    with contextlib.suppress(ProfileError):
        parse_profile(text, "fuzz.yaml")


@settings(max_examples=150, deadline=None)
@given(data=yamlish, key=st.sampled_from(["applications", "risk", "purse", "crypto", "faults"]))
def test_random_structures_give_only_profile_error(data, key) -> None:
    base = _base()
    base[key] = data
    with contextlib.suppress(ProfileError):
        parse_profile(yaml.safe_dump(base), "fuzz.yaml")
    with contextlib.suppress(ProfileError):
        parse_profile(yaml.safe_dump(data), "fuzz.yaml")


def test_model_round_trips() -> None:
    profile = PROFILES["visa-issuer-script"]
    again = CardProfile.model_validate(profile.model_dump())
    assert again == profile
    assert profile.applications[0].issuer_scripts[0].command == "put_data"


# --- response format, contactless consistency, generator agreement -------------------------


@pytest.mark.parametrize("value", [1, 2, None])
def test_response_format_accepts_1_2_and_null(value) -> None:
    data = _base()
    data["applications"][0]["response_format"] = value
    profile = parse_profile(yaml.safe_dump(data), "case.yaml")
    assert profile.applications[0].response_format == value


@pytest.mark.parametrize("value", [3, 0, True, "77"])
def test_response_format_refuses_other_values(value) -> None:
    data = _base()
    data["applications"][0]["response_format"] = value
    assert "case.yaml: applications.0.response_format: " in _error(data)


def _dual() -> dict:
    return yaml.safe_load((ROOT / "mc-dual-interface.yaml").read_text(encoding="utf-8"))


def test_contactless_cda_bit_without_oda_is_named() -> None:
    data = _dual()
    data["contactless"]["aip"] = "1980"
    msg = _error(data)
    assert "case.yaml: contactless.aip: sets cda_supported but " in msg
    assert "applications.0.crypto.oda is none" in msg


def test_contactless_dda_bit_is_allowed_for_a_cda_application() -> None:
    data = yaml.safe_load((ROOT / "mc-debit-cda.yaml").read_text(encoding="utf-8"))
    data["interfaces"].append("contactless")
    data["contactless"] = _dual()["contactless"] | {"aip": "3880"}
    assert parse_profile(yaml.safe_dump(data), "case.yaml").contactless.aip == "3880"
    data["contactless"]["aip"] = "5880"
    assert "contactless.aip: sets sda_supported but applications.0.crypto.oda is cda" in (
        _error(data)
    )


def test_contactless_without_cryptogram_needs_cdol1_in_its_records() -> None:
    data = _dual()
    del data["contactless"]["records"][1][1]["8C"]
    assert "case.yaml: contactless.records: GPO does not return the cryptogram" in _error(data)
    data = _dual()
    data["contactless"]["records"][1][1]["8C"] = "9F0206"
    assert "case.yaml: contactless.records.1.1.8C: differs from applications.0.cdol1" in (
        _error(data)
    )
    data = _dual()
    data["contactless"]["afl"] = "08010200"
    assert "case.yaml: contactless.afl: names SFI 1 record 2" in _error(data)


def test_generator_and_shipped_files_agree() -> None:
    """The catalogue rebuilt now equals every shipped file: exactly for profiles without RSA
    keys, and apart from the per-run certificates and ICC key for the ODA profiles."""
    from rig.profiles.catalogue import specs
    from rig.profiles.generate import Keys, build, load_or_make_ca

    keys = Keys(load_or_make_ca(ROOT / "capk", new=False))
    rsa_fields = {
        "issuer_certificate", "issuer_remainder", "signed_static_data", "icc_certificate",
        "icc_remainder", "icc_exponent", "icc_private_key",
    }  # fmt: skip

    def without_rsa(data: dict) -> dict:
        for app in data.get("applications", []):
            app["crypto"] = {k: v for k, v in app["crypto"].items() if k not in rsa_fields}
            app["records"].pop(3, None)
        return data

    for spec in specs():
        shipped = yaml.safe_load((ROOT / f"{spec.id}.yaml").read_text(encoding="utf-8"))
        built = build(spec, keys) if spec.kind == "emv" else spec.extra
        if spec.oda == "none":
            assert built == shipped, spec.id
        else:
            assert without_rsa(built) == without_rsa(shipped), spec.id
