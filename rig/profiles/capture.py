"""Capture drafts: profiles read from a card by `rig card capture`, which hold no keys.

A draft is profile YAML with a `capture` section whose applications have no `crypto` (the card's
keys cannot be read) but a draft-only `gpo_template` ("80" or "77": the GPO answer format the
card used, which picks the placeholder CVN so a served draft answers GPO the same way) and,
unless captured with --keep-pan, a PAN masked first 6 / last 4 wherever it appears (`pan`,
records 5A / 57, `track2_equivalent`). `load_capture_draft` makes it a valid `CardProfile` for
serving: the masked digits become a Luhn-valid stand-in, and each application
gets PLACEHOLDER TEST KEYS (derived from the profile id) with the ODA method its AIP names, the
public ODA data (certificates) taken from its records and a placeholder ICC key, so the draft
answers every read-only command like the card; cryptograms and dynamic signatures of a draft do
not verify with the real card's issuer (they cannot: its keys are unknown).
"""

from __future__ import annotations

import copy
import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rig.emv import bits
from rig.profiles.errors import ProfileError, format_errors
from rig.profiles.load import _read_text, _read_yaml, parse_profile
from rig.profiles.model import CardProfile, luhn_ok

PLACEHOLDER_LABEL = "PLACEHOLDER TEST KEY: capture draft, the card's keys are unknown"
CVN_BY_RID = {"A000000003": "visa-10", "A000000004": "mc-16", "A000000333": "pboc-01"}
ODA_TAGS = {
    "capk_index": "8F",
    "issuer_certificate": "90",
    "issuer_remainder": "92",
    "issuer_exponent": "9F32",
    "signed_static_data": "93",
    "icc_certificate": "9F46",
    "icc_remainder": "9F48",
    "icc_exponent": "9F47",
}
_NEEDS = {
    "none": (),
    "sda": ("capk_index", "issuer_certificate", "issuer_exponent", "signed_static_data"),
    "dda": ("capk_index", "issuer_certificate", "issuer_exponent", "icc_certificate"),
    "cda": ("capk_index", "issuer_certificate", "issuer_exponent", "icc_certificate"),
}


def is_capture_draft(data: object) -> bool:
    """True for parsed YAML of a capture draft (a `capture` section, applications without keys)."""
    if not isinstance(data, dict) or not isinstance(data.get("capture"), dict):
        return False
    apps = data.get("applications") or []
    return any(isinstance(a, dict) and "crypto" not in a for a in apps)


def stand_in_pan(masked: str) -> str:
    """A Luhn-valid PAN for a masked one: '*' become 0, the last hidden digit fixes the check."""
    if "*" not in masked:
        return masked
    digits = masked.replace("*", "0")
    last = masked.rindex("*")
    for d in "0123456789":
        candidate = digits[:last] + d + digits[last + 1 :]
        if luhn_ok(candidate):
            return candidate
    raise ProfileError(f"masked PAN {masked!r}: no stand-in passes Luhn")  # pragma: no cover


@cache
def _placeholder_icc_key(bits_: int) -> dict[str, str]:
    """An RSA key (exponent 3) standing in for the card's unknown ICC private key."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=3, key_size=bits_)
    numbers = key.private_numbers()
    return {
        "modulus": f"{numbers.public_numbers.n:X}",
        "exponent": "03",
        "private_exponent": f"{numbers.d:X}",
    }


def _record_tags(app: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for recs in (app.get("records") or {}).values():
        for tags in (recs or {}).values():
            for tag, value in (tags or {}).items():
                found.setdefault(str(tag).upper(), str(value))
    return found


def _oda_method(aip: str) -> str:
    try:
        raw = bytes.fromhex(aip)
    except ValueError:
        return "none"
    for method in ("cda", "dda", "sda"):
        if bits.is_set(raw, f"{method}_supported", tag=0x82):
            return method
    return "none"


def placeholder_crypto(profile_id: str, app: dict[str, Any]) -> dict[str, Any]:
    """A `crypto` section for a captured application: placeholder keys, public ODA data."""
    seed = hashlib.sha256(f"posrig capture draft {profile_id} {app.get('aid')}".encode()).digest()
    aid = str(app.get("aid", "")).upper()
    method = _oda_method(str(app.get("aip", "")))
    cvn = CVN_BY_RID.get(aid[:10], "visa-10")
    template = app.get("gpo_template")
    if method != "cda" and template == "77" and not cvn.startswith("mc-"):
        cvn = "mc-16"
    elif template == "80" and cvn.startswith("mc-"):
        cvn = "visa-10"
    crypto: dict[str, Any] = {
        "cvn": cvn,
        "key_label": PLACEHOLDER_LABEL,
        "imk_ac": seed[:16].hex().upper(),
        "imk_smi": seed[16:].hex().upper(),
        "imk_smc": hashlib.sha256(seed).digest()[:16].hex().upper(),
    }
    crypto["oda"] = method
    if method == "none":
        return crypto
    tags = _record_tags(app)
    for key in _NEEDS[method]:
        crypto[key] = tags.get(ODA_TAGS[key], "00")
    for key in ("issuer_remainder", "icc_remainder"):
        if ODA_TAGS[key] in tags and (method != "sda" or key == "issuer_remainder"):
            crypto[key] = tags[ODA_TAGS[key]]
    if method in ("dda", "cda"):
        crypto["icc_exponent"] = tags.get("9F47", "03")
        crypto["icc_private_key"] = _placeholder_icc_key(1024)
    return crypto


def _unmask(value: Any, masked: str, stand_in: str) -> Any:
    if isinstance(value, str):
        return value.replace(masked, stand_in)
    if isinstance(value, dict):
        return {k: _unmask(v, masked, stand_in) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmask(v, masked, stand_in) for v in value]
    return value


def draft_to_profile_data(data: dict[str, Any]) -> dict[str, Any]:
    """The profile mapping a draft stands for: PAN stand-ins and placeholder crypto filled in."""
    out = copy.deepcopy(data)
    apps = []
    for app in out.get("applications") or []:
        if not isinstance(app, dict):
            apps.append(app)
            continue
        pan = str(app.get("pan", ""))
        if "*" in pan:
            app = _unmask(app, pan, stand_in_pan(pan))
        if "crypto" not in app:
            app["crypto"] = placeholder_crypto(str(out.get("id", "draft")), app)
        app.pop("gpo_template", None)
        apps.append(app)
    out["applications"] = apps
    return out


def load_capture_draft(path: str | Path) -> CardProfile:
    """Read a capture draft and make it a servable `CardProfile` (ProfileError when it is bad)."""
    p = Path(path)
    data = _read_yaml(_read_text(p), str(p))
    if not is_capture_draft(data):
        raise ProfileError(
            f"{p}: (top level): not a capture draft (needs a capture section and applications "
            "without crypto); load it with rig.profiles.load_profile"
        )
    assert isinstance(data, dict)
    try:
        return CardProfile.model_validate(draft_to_profile_data(data))
    except ValidationError as exc:
        raise ProfileError(format_errors(str(p), exc, CardProfile)) from None


def load_for_serving(path: str | Path) -> CardProfile:
    """A profile file or a capture draft, whichever the file is."""
    p = Path(path)
    text = _read_text(p)
    data = _read_yaml(text, str(p))
    if is_capture_draft(data):
        return load_capture_draft(p)
    return parse_profile(text, str(p))
