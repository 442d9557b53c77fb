"""Read card profiles and the CAPK set from YAML; every problem is one `ProfileError`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rig.crypto.oda import RsaPublicKey
from rig.profiles.errors import ProfileError, format_errors
from rig.profiles.model import CardProfile, Hex

__all__ = [
    "CapkEntry",
    "CapkFile",
    "IssuerKeys",
    "capk_checksum",
    "issuer_keys",
    "load_all",
    "load_capks",
    "load_profile",
    "parse_profile",
]


def _read_yaml(text: str, path: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ProfileError(f"{path}:{where}: not valid YAML ({exc.__class__.__name__})") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProfileError(f"{path}: YAML value cannot be read ({exc})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None


def parse_profile(text: str, path: str = "<profile>") -> CardProfile:
    """Validate profile YAML text; raise ProfileError naming the key path and the fix."""
    data = _read_yaml(text, path)
    if not isinstance(data, dict):
        raise ProfileError(
            f"{path}: (top level): a card profile is a mapping with id, title, purpose, "
            "expected, test_material, kind, interfaces"
        )
    try:
        return CardProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(format_errors(path, exc, CardProfile)) from None


def load_profile(path: str | Path) -> CardProfile:
    """Read and validate one card profile file."""
    p = Path(path)
    return parse_profile(_read_text(p), str(p))


def load_all(folder: str | Path = "cardprofiles") -> dict[str, CardProfile]:
    """Every `*.yaml` profile in the folder by id; one ProfileError lists every bad file."""
    root = Path(folder)
    if not root.is_dir():
        raise ProfileError(f"{root}: no such profile folder")
    out: dict[str, CardProfile] = {}
    problems: list[str] = []
    for path in sorted(root.glob("*.yaml")):
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            problems.append(str(exc))
            continue
        if profile.id in out:
            problems.append(f"{path}: id: {profile.id!r} is used by another file; ids are unique")
        elif profile.id != path.stem:
            problems.append(f"{path}: id: {profile.id!r} must equal the file name {path.stem!r}")
        else:
            out[profile.id] = profile
    if problems:
        raise ProfileError("\n".join(problems))
    return out


@dataclass(frozen=True)
class IssuerKeys:
    """What the acquirer host needs to verify a card's cryptograms (TEST KEYS)."""

    aid: str
    pan: str
    psn: str
    cvn: str
    imk_ac: bytes = field(repr=False)
    imk_smi: bytes = field(repr=False)
    imk_smc: bytes = field(repr=False)


def issuer_keys(profile: CardProfile) -> list[IssuerKeys]:
    """Issuer master keys per EMV application of the profile (empty for magstripe / purse)."""
    return [
        IssuerKeys(
            a.aid,
            a.pan,
            a.psn,
            a.crypto.cvn,
            bytes.fromhex(a.crypto.imk_ac),
            bytes.fromhex(a.crypto.imk_smi),
            bytes.fromhex(a.crypto.imk_smc),
        )
        for a in profile.applications
    ]


def capk_checksum(rid: bytes, index: int, modulus: bytes, exponent: bytes) -> bytes:
    """CA public key check sum (Book 2 §11.2.2): SHA-1(RID || index || modulus || exponent)."""
    return hashlib.sha1(bytes(rid) + bytes([index]) + bytes(modulus) + bytes(exponent)).digest()


class CapkEntry(BaseModel):
    """One certification authority public key as a terminal stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rid: Hex
    index: Hex
    modulus: Hex
    exponent: Hex
    checksum: Hex
    hash_algorithm: Hex = "01"
    key_algorithm: Hex = "01"
    expiry: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    label: str = "TEST KEY"

    @model_validator(mode="after")
    def _check(self) -> CapkEntry:
        if len(self.rid) != 10 or len(self.index) != 2:
            raise ValueError("rid is 5 bytes and index 1 byte (hex)")
        if self.exponent not in ("03", "010001"):
            raise ValueError("exponent is 03 or 010001")
        want = capk_checksum(
            bytes.fromhex(self.rid),
            int(self.index, 16),
            bytes.fromhex(self.modulus),
            bytes.fromhex(self.exponent),
        )
        if want.hex().upper() != self.checksum:
            raise ValueError(
                f"checksum does not match SHA-1(RID||index||modulus||exponent) = {want.hex()}"
            )
        return self

    def public_key(self) -> RsaPublicKey:
        return RsaPublicKey(int(self.modulus, 16), int(self.exponent, 16))


class CapkFile(BaseModel):
    """A CAPK set file: the rig's test CA public keys, one entry per (RID, index)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    test_material: bool = Field(description="must be true")
    keys: list[CapkEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _test(self) -> CapkFile:
        if self.test_material is not True:
            raise ValueError("test_material must be true: only test CA keys ship with the rig")
        return self


def load_capks(folder: str | Path = "cardprofiles/capk") -> dict[tuple[str, int], RsaPublicKey]:
    """Every CAPK in the folder's `*.yaml` files, keyed by (RID hex, index), checksums verified."""
    root = Path(folder)
    if not root.is_dir():
        raise ProfileError(f"{root}: no such CAPK folder")
    out: dict[tuple[str, int], RsaPublicKey] = {}
    for path in sorted(root.glob("*.yaml")):
        if path.name.endswith(".private.yaml"):
            continue
        data = _read_yaml(_read_text(path), str(path))
        if not isinstance(data, dict):
            raise ProfileError(f"{path}: (top level): a CAPK file is a mapping with name, keys")
        try:
            capks = CapkFile.model_validate(data)
        except ValidationError as exc:
            raise ProfileError(format_errors(str(path), exc, CapkFile)) from None
        for entry in capks.keys:
            key = (entry.rid, int(entry.index, 16))
            if key in out:
                raise ProfileError(f"{path}: keys: RID {entry.rid} index {entry.index} repeats")
            out[key] = entry.public_key()
    return out
