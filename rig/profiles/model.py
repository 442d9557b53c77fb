"""Card profiles: what a simulated card is (applications, records, keys, risk rules), as data.

A profile is a YAML file under `cardprofiles/` validated by these pydantic models. The card
simulator serves it and the acquirer host reads the issuer keys from it, so the model lives apart
from both. Every key in a profile is TEST MATERIAL (`test_material: true` is required). Hex values
are quoted strings; record contents are `tag -> hex` maps per SFI and record number, in the order
the card returns them. The format is documented in docs/cardprofiles.md. The section models
(crypto, risk, contactless, purse, faults, capture) are in `rig.profiles.sections`.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from rig.emv import bits
from rig.emv.dol import AflError, parse_afl
from rig.emv.tlv import encode
from rig.profiles.sections import (
    Capture,
    Contactless,
    Crypto,
    Digits,
    Faults,
    Hex,
    Iac,
    IccPrivateKey,
    IssuerScript,
    Magstripe,
    Purse,
    PurseKeys,
    Records,
    Risk,
    _Strict,
    luhn_ok,
)

__all__ = [
    "Application",
    "CardProfile",
    "Contactless",
    "Crypto",
    "Faults",
    "Iac",
    "IccPrivateKey",
    "IssuerScript",
    "Magstripe",
    "Purse",
    "PurseKeys",
    "Risk",
    "luhn_ok",
    "oda_static_data",
    "record_template",
]


def record_template(tags: dict[str, str]) -> bytes:
    """A record as READ RECORD returns it: template 70 around the tag -> hex objects."""
    return encode(0x70, _objects(tags))


def _objects(tags: dict[str, str]) -> bytes:
    return b"".join(encode(int(t, 16), bytes.fromhex(v)) for t, v in tags.items())


def oda_static_data(records: Records, afl: str, aip: str | None = None) -> bytes:
    """Static data to be authenticated (Book 3 §10.3): records the AFL marks for ODA (SFI 1-10:
    the template 70 contents; SFI 11-30: the whole record), then the AIP if 9F4A lists 82."""
    out = bytearray()
    sdatl = ""
    for entry in parse_afl(bytes.fromhex(afl)):
        for number in entry.oda_records():
            tags = records.get(entry.sfi, {}).get(number)
            if tags is None:
                raise ValueError(f"AFL names SFI {entry.sfi} record {number}, not in records")
            out += _objects(tags) if entry.sfi <= 10 else record_template(tags)
            sdatl = tags.get("9F4A", sdatl)
    if sdatl:
        if sdatl != "82":
            raise ValueError(f"9F4A (SDA tag list) must be '82' when present, got {sdatl}")
        if aip is None:
            raise ValueError("9F4A lists the AIP but no AIP was given")
        out += bytes.fromhex(aip)
    return bytes(out)


CONTACTLESS_ODA = {"none": (), "sda": ("sda",), "dda": ("dda",), "cda": ("dda", "cda")}
"""ODA methods a contactless AIP may announce for each `crypto.oda` of the served application."""


def _detail(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return InitErrorDetails(type=error, loc=loc, input=None)


class Application(_Strict):
    """One EMV application: selection data, GPO answer, records, risk data and keys."""

    aid: Hex
    label: str
    preferred_name: str | None = None
    priority: int = Field(1, ge=0, le=15)
    pdol: Hex = ""
    aip: Hex
    afl: Hex
    records: Records
    cdol1: Hex
    cdol2: Hex
    ddol: Hex = ""
    cvm_list: Hex = ""
    iac: Iac = Field(default_factory=Iac)
    app_version: Hex = "0096"
    auc: Hex = "FF00"
    effective: date
    expiry: date
    currency: Digits = "978"
    country: Digits = "250"
    pan: Digits
    psn: Digits = "00"
    service_code: Digits = "201"
    track2_equivalent: Hex
    crypto: Crypto
    issuer_scripts: list[IssuerScript] = Field(default_factory=list)
    response_format: Literal[1, 2] | None = Field(
        None,
        description="GPO / INTERNAL AUTHENTICATE / GENERATE AC answer format: 1 (template 80) "
        "or 2 (template 77); None: 2 for Mastercard CVNs and CDA, else 1",
    )

    @field_validator("response_format", mode="before")
    @classmethod
    def _format_number(cls, v: object) -> object:
        if isinstance(v, bool) or (v is not None and v not in (1, 2)):
            raise ValueError(f"response_format {v!r}: use 1 (template 80), 2 (template 77) or null")
        return v

    @field_validator("aid")
    @classmethod
    def _aid(cls, v: str) -> str:
        if not 5 <= len(v) // 2 <= 16:
            raise ValueError("an AID is 5 to 16 bytes (RID of 5 bytes + PIX)")
        return v

    @field_validator("pan")
    @classmethod
    def _pan(cls, v: str) -> str:
        if not 12 <= len(v) <= 19:
            raise ValueError(f"a PAN has 12 to 19 digits, got {len(v)}")
        if not luhn_ok(v):
            raise ValueError(f"PAN {v[:6]}...{v[-4:]} fails the Luhn check; fix the check digit")
        return v

    @field_validator("psn")
    @classmethod
    def _psn(cls, v: str) -> str:
        if len(v) != 2:
            raise ValueError("the PAN sequence number is 2 digits, e.g. '01'")
        return v

    @field_validator("service_code", "currency", "country")
    @classmethod
    def _three(cls, v: str) -> str:
        if len(v) != 3:
            raise ValueError("must be 3 digits (ISO 4217 / ISO 3166 numeric, or service code)")
        return v

    @field_validator("aip", "auc", "app_version")
    @classmethod
    def _two_bytes(cls, v: str) -> str:
        if len(v) != 4:
            raise ValueError("must be 2 bytes (4 hex digits)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Application:
        problems: list[str] = []
        if self.expiry <= self.effective:
            problems.append(f"expiry {self.expiry} must be after effective {self.effective}")
        try:
            afl = parse_afl(bytes.fromhex(self.afl))
        except AflError as exc:
            raise ValueError(f"afl: {exc}") from None
        for entry in afl:
            for number in entry.records():
                if number not in self.records.get(entry.sfi, {}):
                    problems.append(f"afl names SFI {entry.sfi} record {number}: add it to records")
        problems += self._aip_matches_oda()
        problems += self._records_match_fields()
        t2 = self.track2_equivalent.rstrip("F")
        want = f"{self.pan}D{self.expiry:%y%m}{self.service_code}"
        if not t2.startswith(want):
            problems.append(f"track2_equivalent must begin {want} (PAN D YYMM service code)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _aip_matches_oda(self) -> list[str]:
        aip = bytes.fromhex(self.aip)
        order = ("sda", "dda", "cda")
        flags = {m: bits.is_set(aip, f"{m}_supported", tag=0x82) for m in order}
        method = self.crypto.oda
        if method == "none":
            on = [m for m in order if flags[m]]
            return [f"aip sets {', '.join(on)} but crypto.oda is none"] if on else []
        out = []
        if not flags[method]:
            out.append(f"crypto.oda is {method} but the aip does not set {method}_supported")
        stronger = [m for m in order[order.index(method) + 1 :] if flags[m]]
        if stronger:
            out.append(f"aip sets {', '.join(stronger)} beyond crypto.oda {method}")
        return out

    def _records_match_fields(self) -> list[str]:
        expect = {
            "5A": self.pan + ("F" if len(self.pan) % 2 else ""),
            "5F24": f"{self.expiry:%y%m%d}",
            "5F25": f"{self.effective:%y%m%d}",
            "5F34": self.psn,
            "57": self.track2_equivalent,
            "8E": self.cvm_list or None,
            "8C": self.cdol1,
            "8D": self.cdol2,
            "8F": self.crypto.capk_index,
            "90": self.crypto.issuer_certificate,
            "92": self.crypto.issuer_remainder or None,
            "9F32": self.crypto.issuer_exponent,
            "93": self.crypto.signed_static_data,
            "9F46": self.crypto.icc_certificate,
            "9F48": self.crypto.icc_remainder or None,
            "9F47": self.crypto.icc_exponent,
        }
        out = []
        for sfi, recs in self.records.items():
            for number, tags in recs.items():
                for tag, want in expect.items():
                    if tag in tags and want is not None and tags[tag] != want:
                        out.append(
                            f"records.{sfi}.{number}.{tag} differs from the profile field "
                            "it mirrors; regenerate or make them equal"
                        )
        return out

    def record(self, sfi: int, number: int) -> bytes | None:
        """READ RECORD answer (template 70), or None when the record does not exist."""
        tags = self.records.get(sfi, {}).get(number)
        return None if tags is None else record_template(tags)

    def static_data(self) -> bytes:
        """The static data to be authenticated for SDA / DDA / CDA (Book 3 §10.3)."""
        return oda_static_data(self.records, self.afl, self.aip)


class CardProfile(_Strict):
    """A whole card profile file."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    purpose: str = Field(min_length=1)
    expected: str = Field(min_length=1)
    test_material: Literal[True] = Field(description="must be true: every key here is a test key")
    kind: Literal["emv", "magstripe", "purse"]
    interfaces: list[Literal["contact", "contactless", "magstripe"]] = Field(min_length=1)
    atr: Hex | None = None
    applications: list[Application] = Field(default_factory=list)
    risk: Risk = Field(default_factory=Risk)
    contactless: Contactless | None = None
    magstripe: Magstripe | None = None
    purse: Purse | None = None
    faults: Faults = Field(default_factory=Faults)
    capture: Capture | None = None

    @model_validator(mode="after")
    def _kind_sections(self) -> CardProfile:
        problems = self._section_problems()
        located = self._contactless_problems()
        if not problems and not located:
            return self
        details = [_detail((), p) for p in problems] + [_detail(loc, m) for loc, m in located]
        raise ValidationError.from_exception_data(type(self).__name__, details)

    def _section_problems(self) -> list[str]:
        problems = []
        chip = {"contact", "contactless"} & set(self.interfaces)
        if self.kind == "emv" and not self.applications:
            problems.append("kind emv needs at least one entry under applications")
        if self.kind == "purse" and self.purse is None:
            problems.append("kind purse needs a purse section")
        if self.kind == "magstripe" and (chip or self.applications):
            problems.append("kind magstripe has interfaces [magstripe] only and no applications")
        if "magstripe" in self.interfaces and self.magstripe is None:
            problems.append("interface magstripe needs a magstripe section (tracks)")
        if "contactless" in self.interfaces and self.kind == "emv" and self.contactless is None:
            problems.append("interface contactless needs a contactless section")
        if self.contactless is not None and "contactless" not in self.interfaces:
            problems.append("a contactless section needs contactless in interfaces")
        if "contact" in self.interfaces and not self.atr:
            problems.append("interface contact needs an atr")
        aids = [a.aid for a in self.applications]
        if len(set(aids)) != len(aids):
            problems.append("applications: each aid must appear once")
        if self.contactless and self.contactless.aid and self.contactless.aid not in aids:
            problems.append("contactless.aid must be the aid of one of the applications")
        return problems

    def _contactless_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """The contactless path against the application it serves: ODA bits of its AIP, its AFL,
        and the CDOLs a terminal reads from its records before GENERATE AC."""
        cl = self.contactless
        if cl is None or not self.applications:
            return []
        index = next(
            (i for i, a in enumerate(self.applications) if a.aid == (cl.aid or a.aid)), None
        )
        if index is None:
            return []
        app = self.applications[index]
        out: list[tuple[tuple[str | int, ...], str]] = []
        aip = bytes.fromhex(cl.aip)
        allowed = CONTACTLESS_ODA[app.crypto.oda]
        for method in ("sda", "dda", "cda"):
            if bits.is_set(aip, f"{method}_supported", tag=0x82) and method not in allowed:
                out.append((
                    ("contactless", "aip"),
                    f"sets {method}_supported but applications.{index}.crypto.oda is "
                    f"{app.crypto.oda}; clear that bit or give the application {method} material",
                ))  # fmt: skip
        try:
            afl = parse_afl(bytes.fromhex(cl.afl))
        except AflError as exc:
            return [*out, (("contactless", "afl"), str(exc))]
        named: list[tuple[int, int]] = []
        for entry in afl:
            for number in entry.records():
                named.append((entry.sfi, number))
                if number not in cl.records.get(entry.sfi, {}):
                    out.append((
                        ("contactless", "afl"),
                        f"names SFI {entry.sfi} record {number}: add it to contactless.records",
                    ))  # fmt: skip
        mirrors = {"8C": app.cdol1, "8D": app.cdol2}
        for sfi, recs in cl.records.items():
            for number, tags in recs.items():
                for tag, want in mirrors.items():
                    if tag in tags and tags[tag] != want:
                        out.append((
                            ("contactless", "records", sfi, number, tag),
                            f"differs from applications.{index}.cdol{1 if tag == '8C' else 2} "
                            "(GENERATE AC uses the application's CDOL); make them equal",
                        ))  # fmt: skip
        if not cl.gpo_returns_cryptogram and not any(
            "8C" in cl.records.get(sfi, {}).get(number, {}) for sfi, number in named
        ):
            out.append((
                ("contactless", "records"),
                "GPO does not return the cryptogram, so a record the contactless afl names "
                f"must carry 8C (CDOL1) and 8D (CDOL2) equal to applications.{index}.cdol1/cdol2",
            ))  # fmt: skip
        return out

    def application(self, aid: str | bytes) -> Application | None:
        """The application with this AID (hex or bytes), or None."""
        key = aid.hex().upper() if isinstance(aid, bytes) else aid.upper()
        return next((a for a in self.applications if a.aid == key), None)
