"""Application cryptograms (ARQC/TC/AAC) and ARPC per cryptogram version (CVN), as data plus a
few pure functions. The AC is ISO 9797-1 MAC algorithm 3 over the CVN's data list (Book 2 A1.2).

Each `Cvn` names: master key option, AC session key method (`rig.crypto.emv_keys`), padding,
the ordered data list (tags, plus ``CVR`` = the part of 9F10 the scheme uses), ARPC method and
the key the ARPC is computed with.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from rig.crypto.emv_keys import ac_session_key, derive_icc_mk
from rig.crypto.mac import mac_alg3
from rig.crypto.primitives import CryptoError, tdes_ecb_encrypt, xor

__all__ = [
    "CVNS",
    "TAG_LENGTHS",
    "Cvn",
    "arpc_method1",
    "arpc_method2",
    "build_ac_data",
    "compute_ac",
    "cvn_data_elements",
    "generate_ac",
    "generate_arpc",
    "get_cvn",
    "icc_master_key",
    "session_key",
    "verify_arqc",
]

BASE_TAGS = ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36")

TAG_LENGTHS: dict[str, int] = {
    "9F02": 6,
    "9F03": 6,
    "9F1A": 2,
    "95": 5,
    "5F2A": 2,
    "9A": 3,
    "9C": 1,
    "9F37": 4,
    "82": 2,
    "9F36": 2,
}


@dataclass(frozen=True)
class Cvn:
    """One cryptogram version: how keys are derived and what the AC covers."""

    name: str
    number: int
    scheme: str
    mk_option: str
    session: str
    padding: int
    elements: tuple[str, ...]
    cvr: tuple[int, int] | None
    arpc_method: int
    arpc_key: str
    description: str


def _cvn(name: str, number: int, scheme: str, mk: str, session: str, **kw: object) -> Cvn:
    return Cvn(name, number, scheme, mk, session, **kw)  # type: ignore[arg-type]


_VISA_CVR = {"elements": (*BASE_TAGS, "CVR"), "cvr": (3, 7)}
_MC_CVR = {"elements": (*BASE_TAGS, "CVR"), "cvr": (2, 8), "padding": 2, "arpc_method": 1}
_IAD = {"elements": (*BASE_TAGS, "9F10"), "cvr": None, "padding": 2, "arpc_method": 2}

# fmt: off
CVNS: dict[str, Cvn] = {
    c.name: c
    for c in (
        _cvn(
            "visa-10", 10, "Visa", "A", "none", padding=1, arpc_method=1, arpc_key="session",
            description="VIS CVN 10: UDK used directly, padding 1, CVR = 9F10 bytes 4-7, ARPC 1",
            **_VISA_CVR,
        ),
        _cvn(
            "visa-18", 18, "Visa", "B", "emv_csk", arpc_key="session",
            description="VIS CVN 18: EMV common session key, padding 2, whole IAD, ARPC 2",
            **_IAD,
        ),
        _cvn(
            "visa-22", 22, "Visa", "B", "emv_csk", arpc_key="session",
            description="VIS CVN '22' (TDES, IAD format 2): as CVN 18 over the 32-byte IAD",
            **_IAD,
        ),
        _cvn(
            "mc-16", 16, "Mastercard", "A", "mastercard", arpc_key="icc_mk",
            description="M/Chip CVN 16: Mastercard SKD (ATC, UN), padding 2, CVR = 9F10 bytes "
            "3-8, ARPC 1 under the ICC master key",
            **_MC_CVR,
        ),
        _cvn(
            "mc-20", 20, "Mastercard", "A", "emv_csk", arpc_key="session",
            description="M/Chip CVN 20: EMV common session key, padding 2, CVR = 9F10 bytes "
            "3-8, ARPC 1",
            **_MC_CVR,
        ),
        _cvn(
            "pboc-01", 1, "PBOC/UICS", "A", "pboc", padding=2, arpc_method=1, arpc_key="session",
            description="PBOC 2.0 CVN 01: PBOC session key, padding 2, CVR = 9F10 bytes 4-7, "
            "ARPC 1",
            **_VISA_CVR,
        ),
    )
}
# fmt: on

_ALIASES = {"10": "visa-10", "18": "visa-18", "22": "visa-22", "16": "mc-16", "20": "mc-20"}
_ALIASES |= {"pboc": "pboc-01", "1": "pboc-01", "01": "pboc-01"}


def get_cvn(cvn: str | int | Cvn) -> Cvn:
    """Look a CVN up by name ('visa-18'), number (18) or alias ('pboc')."""
    if isinstance(cvn, Cvn):
        return cvn
    key = str(cvn).strip().lower()
    found = CVNS.get(key) or CVNS.get(_ALIASES.get(key, ""))
    if found is None:
        raise CryptoError(f"unknown CVN {cvn!r}; known: {', '.join(sorted(CVNS))}")
    return found


def cvn_data_elements(cvn: str | int | Cvn) -> tuple[str, ...]:
    """The ordered data list the CVN's AC covers (tags, and CVR for the IAD part)."""
    return get_cvn(cvn).elements


def _tag(tags: Mapping[str, bytes], tag: str) -> bytes:
    value = tags.get(tag)
    if value is None:
        value = next((v for k, v in tags.items() if k.upper() == tag), None)
        if value is None:
            raise CryptoError(f"tag {tag} is missing from the AC data")
    if not isinstance(value, bytes | bytearray):
        raise CryptoError(f"tag {tag}: value must be bytes, got {type(value).__name__}")
    return bytes(value)


def build_ac_data(cvn: str | int | Cvn, tags: Mapping[str, bytes]) -> bytes:
    """Concatenate the CVN's data list from a tag -> value mapping, checking every length."""
    spec = get_cvn(cvn)
    out = bytearray()
    for element in spec.elements:
        if element == "CVR":
            iad = _tag(tags, "9F10")
            start, end = spec.cvr or (0, 0)
            if len(iad) < end:
                raise CryptoError(
                    f"tag 9F10: {len(iad)} bytes, {spec.name} needs at least {end} for the CVR"
                )
            out += iad[start:end]
            continue
        value = _tag(tags, element)
        if element == "9F10":
            if not 1 <= len(value) <= 32:
                raise CryptoError(f"tag 9F10: must be 1 to 32 bytes, got {len(value)}")
        elif len(value) != TAG_LENGTHS[element]:
            raise CryptoError(
                f"tag {element}: must be {TAG_LENGTHS[element]} bytes, got {len(value)}"
            )
        out += value
    return bytes(out)


def icc_master_key(cvn: str | int | Cvn, imk: bytes, pan: str, psn: str | None = "00") -> bytes:
    """ICC master key (UDK) for the CVN's Book 2 option."""
    return derive_icc_mk(imk, pan, psn, get_cvn(cvn).mk_option)


def session_key(cvn: str | int | Cvn, icc_mk: bytes, atc: bytes, un: bytes | None = None) -> bytes:
    """AC session key for the CVN (the UDK itself for Visa CVN 10)."""
    return ac_session_key(get_cvn(cvn).session, icc_mk, atc, un)


def compute_ac(key: bytes, data: bytes, padding: int) -> bytes:
    """8-byte AC: MAC algorithm 3 with the given ISO 9797-1 padding method."""
    return mac_alg3(key, data, padding)


def _session_for(spec: Cvn, icc_mk: bytes, tags: Mapping[str, bytes]) -> bytes:
    atc = _tag(tags, "9F36")
    un = _tag(tags, "9F37") if spec.session == "mastercard" else None
    return session_key(spec, icc_mk, atc, un)


def generate_ac(cvn: str | int | Cvn, icc_mk: bytes, tags: Mapping[str, bytes]) -> bytes:
    """ARQC/TC/AAC for the CVN from the ICC master key and the transaction tags."""
    spec = get_cvn(cvn)
    data = build_ac_data(spec, tags)
    return compute_ac(_session_for(spec, icc_mk, tags), data, spec.padding)


def verify_arqc(
    cvn: str | int | Cvn, icc_mk: bytes, tags: Mapping[str, bytes], arqc: bytes
) -> bool:
    """True when the 8-byte ARQC matches; constant-time comparison."""
    return hmac.compare_digest(generate_ac(cvn, icc_mk, tags), bytes(arqc))


def arpc_method1(key: bytes, arqc: bytes, arc: bytes) -> bytes:
    """ARPC method 1 (Book 2 8.2.1): TDES(key)[ARQC xor (ARC || 00*6)], 8 bytes."""
    if len(arqc) != 8:
        raise CryptoError(f"ARQC: must be 8 bytes, got {len(arqc)}")
    if len(arc) != 2:
        raise CryptoError(f"ARC (authorisation response code): must be 2 bytes, got {len(arc)}")
    if len(key) != 16:
        raise CryptoError(f"ARPC key: must be 16 bytes, got {len(key)}")
    return tdes_ecb_encrypt(key, xor(bytes(arqc), bytes(arc) + bytes(6)))


def arpc_method2(key: bytes, arqc: bytes, csu: bytes, proprietary: bytes = b"") -> bytes:
    """ARPC method 2 (Book 2 8.2.2): 4-byte MAC alg 3, padding 2, over ARQC || CSU || prop."""
    if len(arqc) != 8:
        raise CryptoError(f"ARQC: must be 8 bytes, got {len(arqc)}")
    if len(csu) != 4:
        raise CryptoError(f"CSU (card status update): must be 4 bytes, got {len(csu)}")
    if len(proprietary) > 8:
        raise CryptoError(f"proprietary authentication data: 0 to 8 bytes, got {len(proprietary)}")
    return mac_alg3(key, bytes(arqc) + bytes(csu) + bytes(proprietary), 2)[:4]


def generate_arpc(
    cvn: str | int | Cvn,
    icc_mk: bytes,
    arqc: bytes,
    atc: bytes,
    *,
    un: bytes | None = None,
    arc: bytes | None = None,
    csu: bytes | None = None,
    proprietary: bytes = b"",
) -> bytes:
    """ARPC for the CVN: method and key as the CVN defines (ARC for method 1, CSU for method 2)."""
    spec = get_cvn(cvn)
    key = icc_mk if spec.arpc_key == "icc_mk" else session_key(spec, icc_mk, atc, un)
    if spec.arpc_method == 1:
        if arc is None:
            raise CryptoError(f"{spec.name} uses ARPC method 1: give the 2-byte ARC")
        return arpc_method1(key, arqc, arc)
    if csu is None:
        raise CryptoError(f"{spec.name} uses ARPC method 2: give the 4-byte CSU")
    return arpc_method2(key, arqc, csu, proprietary)
