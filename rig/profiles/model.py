"""Card profiles: what a simulated card is (applications, records, keys, risk rules), as data.

A profile is a YAML file under `cardprofiles/` validated by these pydantic models. The card
simulator serves it and the acquirer host reads the issuer keys from it, so the model lives apart
from both. Every key in a profile is TEST MATERIAL (`test_material: true` is required). Hex values
are quoted strings; record contents are `tag -> hex` maps per SFI and record number, in the order
the card returns them. The format is documented in docs/cardprofiles.md.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from rig.crypto.arqc import CVNS
from rig.crypto.oda import RsaKeyPair, RsaPublicKey
from rig.emv import bits
from rig.emv.dol import AflError, parse_afl
from rig.emv.tlv import encode

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


def _hex(value: object) -> object:
    if isinstance(value, (bool, int | float)):
        raise ValueError(
            f"YAML read {value!r} as a number; write hex as a quoted string, e.g. '{value}'"
        )
    if not isinstance(value, str):
        raise ValueError(f"expected a quoted hex string, got {type(value).__name__}")
    text = "".join(value.split()).upper()
    if len(text) % 2 or any(c not in "0123456789ABCDEF" for c in text):
        raise ValueError(f"{value!r} is not hex (pairs of 0-9 A-F)")
    return text


def _digits(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"YAML read {value!r} as a number; quote it ('{value}') to keep zeros")
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError(f"expected a quoted string of decimal digits, got {value!r}")
    return value


def _tag_key(value: object) -> object:
    text = str(value).upper() if isinstance(value, int | str) else value
    if not isinstance(text, str) or len(text) not in (2, 4, 6) or _hex(text) != text:
        raise ValueError(f"record key {value!r} is not an EMV tag in hex (e.g. '5A', '9F08')")
    return text


Hex = Annotated[str, BeforeValidator(_hex)]
Digits = Annotated[str, BeforeValidator(_digits)]
TagKey = Annotated[str, BeforeValidator(_tag_key)]
Records = dict[
    Annotated[int, Field(ge=1, le=30)], dict[Annotated[int, Field(ge=1, le=255)], dict[TagKey, Hex]]
]


def luhn_ok(number: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Iac(_Strict):
    """Issuer action codes (9F0E denial, 9F0F online, 9F0D default), 5 bytes each."""

    denial: Hex = "0000000000"
    online: Hex = "0000000000"
    default: Hex = "0000000000"

    @field_validator("denial", "online", "default")
    @classmethod
    def _five(cls, v: str) -> str:
        if len(v) != 10:
            raise ValueError("an issuer action code is 5 bytes (10 hex digits)")
        return v


class IccPrivateKey(_Strict):
    """The ICC RSA key as numbers in hex (TEST KEY): modulus, public and private exponent."""

    modulus: Hex
    exponent: Hex
    private_exponent: Hex

    def key_pair(self) -> RsaKeyPair:
        pub = RsaPublicKey(int(self.modulus, 16), int(self.exponent, 16))
        return RsaKeyPair(pub, int(self.private_exponent, 16))


class Crypto(_Strict):
    """Issuer master keys (TEST KEYS), CVN and offline data authentication material."""

    cvn: str = Field(description="a name from rig.crypto.arqc.CVNS, e.g. visa-18")
    imk_ac: Hex
    imk_smi: Hex
    imk_smc: Hex
    key_label: str = "TEST KEY"
    oda: Literal["none", "sda", "dda", "cda"] = "none"
    capk_index: Hex | None = None
    issuer_certificate: Hex | None = None
    issuer_remainder: Hex = ""
    issuer_exponent: Hex | None = None
    signed_static_data: Hex | None = None
    dac: Hex = "DAC0"
    icc_certificate: Hex | None = None
    icc_remainder: Hex = ""
    icc_exponent: Hex | None = None
    icc_private_key: IccPrivateKey | None = None
    oda_invalid: str | None = Field(
        None, description="set on purpose-built bad-ODA profiles: what was corrupted and why"
    )

    @field_validator("cvn")
    @classmethod
    def _known_cvn(cls, v: str) -> str:
        if v not in CVNS:
            raise ValueError(f"unknown CVN {v!r}; use one of {', '.join(sorted(CVNS))}")
        return v

    @field_validator("imk_ac", "imk_smi", "imk_smc")
    @classmethod
    def _tdes(cls, v: str) -> str:
        if len(v) != 32:
            raise ValueError("an issuer master key is a 16-byte TDES key (32 hex digits)")
        return v

    @model_validator(mode="after")
    def _oda_material(self) -> Crypto:
        issuer = ("capk_index", "issuer_certificate", "issuer_exponent")
        needs = {
            "none": (),
            "sda": (*issuer, "signed_static_data"),
            "dda": (*issuer, "icc_certificate", "icc_exponent", "icc_private_key"),
            "cda": (*issuer, "icc_certificate", "icc_exponent", "icc_private_key"),
        }[self.oda]
        missing = [k for k in needs if getattr(self, k) is None]
        if missing:
            raise ValueError(f"oda {self.oda} needs {', '.join(missing)} (run the generator)")
        optional = ("capk_index", "issuer_certificate", "issuer_exponent", "signed_static_data")
        optional += ("icc_certificate", "icc_exponent", "icc_private_key")
        extra = [k for k in optional if k not in needs and getattr(self, k) is not None]
        if extra:
            raise ValueError(f"oda {self.oda} must not carry {', '.join(extra)}; remove them")
        return self


class IssuerScript(_Strict):
    """An issuer script the reference host sends to this card (template 71 or 72)."""

    template: Literal[71, 72] = 72
    command: Literal[
        "application_block",
        "application_unblock",
        "card_block",
        "pin_change",
        "pin_unblock",
        "put_data",
    ]
    data: dict[TagKey, Hex] = Field(default_factory=dict, description="PUT DATA tag -> value")
    new_pin: Digits | None = None


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


class Risk(_Strict):
    """Card risk management and PIN settings (test PIN)."""

    pin: Digits | None = Field(None, description="offline PIN, TEST PIN only")
    pin_try_limit: int = Field(3, ge=1, le=15)
    pin_try_counter: int = Field(3, ge=0, le=15)
    lower_consecutive_offline_limit: int = Field(0, ge=0, le=255, description="9F14")
    upper_consecutive_offline_limit: int = Field(0, ge=0, le=255, description="9F23")
    force_decline: bool = Field(False, description="answer every GENERATE AC with an AAC")
    force_online: bool = Field(False, description="answer a TC request with an ARQC")
    application_blocked: bool = False
    atc: int = Field(1, ge=0, le=0xFFFF, description="ATC before the first transaction")

    @model_validator(mode="after")
    def _counters(self) -> Risk:
        if self.pin_try_counter > self.pin_try_limit:
            raise ValueError("pin_try_counter must not exceed pin_try_limit")
        if self.pin is not None and not 4 <= len(self.pin) <= 12:
            raise ValueError("pin: 4 to 12 digits")
        if self.upper_consecutive_offline_limit < self.lower_consecutive_offline_limit:
            raise ValueError("upper_consecutive_offline_limit must be >= the lower limit")
        return self


class Contactless(_Strict):
    """Contactless fast path (qVSDC-like or M/Chip-like) with its own minimal records."""

    flavour: Literal["visa", "mastercard"]
    aid: Hex | None = Field(None, description="the application it serves; default the first")
    gpo_returns_cryptogram: bool = True
    pdol: Hex = ""
    aip: Hex
    afl: Hex = ""
    records: Records = Field(default_factory=dict)
    ctq: Hex | None = Field(None, description="card transaction qualifiers (9F6C), Visa")


class Magstripe(_Strict):
    """Magnetic stripe tracks (ISO 7813), test data only."""

    track1: str | None = None
    track2: str = Field(description="PAN=YYMM service code discretionary, without sentinels")

    @field_validator("track2")
    @classmethod
    def _track2(cls, v: str) -> str:
        pan, sep, rest = v.partition("=")
        if not sep or not pan.isdigit() or not rest.isdigit() or len(rest) < 7:
            raise ValueError("track2 is PAN=YYMMSSS... (digits, '=' separator)")
        if not luhn_ok(pan):
            raise ValueError("the track 2 PAN fails the Luhn check; fix the check digit")
        return v

    @property
    def pan(self) -> str:
        return self.track2.partition("=")[0]

    @property
    def service_code(self) -> str:
        return self.track2.partition("=")[2][4:7]


class PurseKeys(_Strict):
    """Purse issuer master keys (docs/prepaid.md), TEST KEYS."""

    mlk: Hex
    mpk: Hex
    mtk: Hex

    @field_validator("mlk", "mpk", "mtk")
    @classmethod
    def _tdes(cls, v: str) -> str:
        if len(v) != 32:
            raise ValueError("a purse master key is a 16-byte TDES key (32 hex digits)")
        return v


class Purse(_Strict):
    """Stored-value purse application (docs/prepaid.md)."""

    aid: Hex
    label: str = "PURSE"
    asn: Hex = Field(description="application serial number, 8 to 10 bytes")
    keys: PurseKeys
    key_version: int = Field(1, ge=0, le=255)
    algorithm: int = Field(0, ge=0, le=255)
    initial_balance: int = Field(0, ge=0)
    max_balance: int = Field(100_000_00, ge=0, le=0x7FFFFFFF)
    online_counter: int = Field(0, ge=0, le=0xFFFF)
    offline_counter: int = Field(0, ge=0, le=0xFFFF)

    @model_validator(mode="after")
    def _balance(self) -> Purse:
        if not 8 <= len(self.asn) // 2 <= 10:
            raise ValueError("asn: 8 to 10 bytes")
        if self.initial_balance > self.max_balance:
            raise ValueError("initial_balance must not exceed max_balance")
        return self


class Faults(_Strict):
    """Faults active from power-on (defaults: none); the control interface changes them later."""

    mute: bool = False
    delay_ms: int = Field(0, ge=0, le=60_000)
    status_words: dict[str, Hex] = Field(
        default_factory=dict, description="command name -> SW to answer, e.g. GENERATE_AC: 6985"
    )
    corrupt_cryptogram: bool = False
    remove_at_command: int | None = Field(None, ge=1)


class Capture(_Strict):
    """Where a captured draft came from (never keys)."""

    reader: str | None = None
    captured_at: str | None = None
    tool: str = "rig card capture"
    pan_masked: bool = True
    notes: str = ""


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
