"""The sections of a card profile as pydantic models: crypto, risk, contactless, magstripe,
purse, start-up faults and capture provenance, with the hex and digit field types they share.

`rig.profiles.model` puts them together into `Application` and `CardProfile` (and re-exports
them). Every key here is TEST MATERIAL.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from rig.crypto.arqc import CVNS
from rig.crypto.oda import RsaKeyPair, RsaPublicKey

__all__ = [
    "Capture",
    "Contactless",
    "Crypto",
    "Digits",
    "Faults",
    "Hex",
    "Iac",
    "IccPrivateKey",
    "IssuerScript",
    "Magstripe",
    "Purse",
    "PurseKeys",
    "Records",
    "Risk",
    "TagKey",
    "luhn_ok",
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
