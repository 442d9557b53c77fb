"""Application-cryptogram engine for hosts: the ARQC/TC/AAC, AC session keys and ARPC of
`rig.crypto.arqc`, computed on reusable ECB cipher contexts and a per-CVN plan of the AC data.

Creating a `cryptography` cipher context costs several microseconds; updating a kept ECB context
with one block costs well under one. `Alg3Key` keeps the contexts of one double-length key and
chains ISO 9797-1 MAC algorithm 3 through them; `CardAcEngine` keeps one card's ICC master key
(cache it per card) so a host creates no context at all for CVNs that use the ICC master key as
the AC key (Visa CVN 10) and two per request for the others (the fresh session key).

Results and `CryptoError` messages are those of `rig.crypto.arqc`, `rig.crypto.emv_keys` and
`rig.crypto.mac`: any input off the plain path (missing or odd-typed tags, wrong lengths) is
handed to those reference functions. The contexts are stateless (ECB, whole blocks only), but
the objects are meant for one thread at a time, like the asyncio host that uses them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from rig.crypto.arqc import (
    TAG_LENGTHS,
    Cvn,
    _tag,
    arpc_method1,
    arpc_method2,
    build_ac_data,
    get_cvn,
)
from rig.crypto.emv_keys import ac_session_key, derive_icc_mk
from rig.crypto.primitives import CryptoError, adjust_parity

__all__ = ["CARD_CACHE_SIZE", "AcPlan", "Alg3Key", "CardAcEngine", "ac_plan"]

CARD_CACHE_SIZE = 4096
"""Engines a host keeps cached (about 4 KB each with their OpenSSL contexts)."""

_ECB = modes.ECB()
_PARITY = adjust_parity(bytes(range(256)))
_Z5 = bytes(5)
_Z6 = bytes(6)
_IAD_MAX = 32
_is_bytes = bytes.__instancecheck__


def _encryptor(key24: bytes) -> Any:
    return Cipher(TripleDES(key24), _ECB).encryptor()


class Alg3Key:
    """A 16-byte key K1||K2 with two reusable ECB encryptors: single DES under K1 (the CBC chain
    of ISO 9797-1 MAC algorithm 3) and 2-key TDES K1K2K1, which is both the MAC's final step
    E_K1(D_K2(E_K1(x))) and the TDES-ECB encryption of the key (session keys, ARPC method 1)."""

    __slots__ = ("_des", "_tdes", "key")

    def __init__(self, key16: bytes) -> None:
        if len(key16) != 16:
            raise CryptoError(f"mac_alg3: key must be 16 bytes (K1||K2), got {len(key16)}")
        self.key = bytes(key16)
        k1 = self.key[:8]
        self._des: Callable[[bytes], bytes] = _encryptor(k1 * 3).update
        self._tdes: Callable[[bytes], bytes] = _encryptor(self.key + k1).update

    def encrypt(self, data: bytes) -> bytes:
        """2-key TDES-ECB encryption of whole 8-byte blocks (as `tdes_ecb_encrypt`)."""
        if len(data) % 8:
            raise CryptoError(
                f"tdes_ecb_encrypt: data length {len(data)} is not a multiple of the 8-byte block"
            )
        return self._tdes(data)

    def mac(self, data: bytes, padding: int = 1) -> bytes:
        """ISO 9797-1 MAC algorithm 3 with padding method 1 or 2, as `rig.crypto.mac.mac_alg3`."""
        if padding == 2:
            data = data + b"\x80"
        elif padding != 1:
            raise CryptoError(
                f"padding must be 1 or 2 (ISO 9797-1 padding method), got {padding!r}"
            )
        elif not data:
            data = bytes(8)
        if len(data) % 8:
            data = data + bytes(-len(data) % 8)
        last = len(data) - 8
        if not last:
            return self._tdes(data)
        des = self._des
        frm = int.from_bytes
        h = frm(des(data[:8]), "big")
        for i in range(8, last, 8):
            h = frm(des((frm(data[i : i + 8], "big") ^ h).to_bytes(8, "big")), "big")
        return self._tdes((frm(data[last:], "big") ^ h).to_bytes(8, "big"))


@dataclass(frozen=True)
class AcPlan:
    """A CVN's AC data list resolved once: one itemgetter for its tags (and ATC/UN), the lengths
    the fixed tags must have, the 9F10 ranges, and where the CVR slice goes."""

    spec: Cvn
    fetch: Callable[[Mapping[str, bytes]], tuple[bytes, ...]]
    fixed: Callable[[tuple[int, ...]], tuple[int, ...]]
    fixed_lengths: tuple[int, ...]
    ranges: tuple[tuple[int, int, int], ...]
    size: int
    cvr_at: int
    cvr: tuple[int, int]
    atc_at: int
    un_at: int


_PLANS: dict[Cvn, AcPlan] = {}


def ac_plan(cvn: str | int | Cvn) -> AcPlan:
    """The plan of a CVN's AC data list (built once per CVN)."""
    spec = get_cvn(cvn)
    plan = _PLANS.get(spec)
    if plan is None:
        plan = _PLANS[spec] = _build_plan(spec)
    return plan


def _build_plan(spec: Cvn) -> AcPlan:
    names: list[str] = []
    fixed_at: list[int] = []
    fixed_lengths: list[int] = []
    ranges: list[tuple[int, int, int]] = []
    cvr_at = -1
    start, end = spec.cvr or (0, 0)
    for i, element in enumerate(spec.elements):
        if element == "CVR":
            names.append("9F10")
            ranges.append((i, end, 1 << 30))
            cvr_at = i
        elif element == "9F10":
            names.append("9F10")
            ranges.append((i, 1, _IAD_MAX))
        elif element in TAG_LENGTHS:
            names.append(element)
            fixed_at.append(i)
            fixed_lengths.append(TAG_LENGTHS[element])
        else:
            raise CryptoError(f"{spec.name}: data element {element} has no known length")
    size = len(names)
    for tag in ("9F36", "9F37") if spec.session == "mastercard" else ("9F36",):
        if tag not in names:
            names.append(tag)
    return AcPlan(
        spec=spec,
        fetch=_getter(names),
        fixed=_getter(fixed_at),
        fixed_lengths=tuple(fixed_lengths),
        ranges=tuple(ranges),
        size=size,
        cvr_at=cvr_at,
        cvr=(start, end),
        atc_at=names.index("9F36"),
        un_at=names.index("9F37") if spec.session == "mastercard" else -1,
    )


def _getter(keys: list[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """`itemgetter` that returns a tuple for any number of keys."""
    if len(keys) > 1:
        return itemgetter(*keys)
    return lambda items: tuple(items[k] for k in keys)


class CardAcEngine:
    """One card's ICC master key for one CVN, with its cipher contexts: verifies the AC and
    computes the ARPC exactly as `rig.crypto.arqc` does. Cache one per card (PAN, PSN)."""

    __slots__ = ("_method", "mk", "padding", "plan", "spec")

    def __init__(self, cvn: str | int | Cvn, icc_mk: bytes) -> None:
        self.spec = get_cvn(cvn)
        self.plan = ac_plan(self.spec)
        # method "none" checks the key with emv_keys' own "ICC master key: must be ..." message
        self.mk = Alg3Key(ac_session_key("none", icc_mk, b""))
        self.padding = self.spec.padding
        self._method = self.spec.session

    @classmethod
    def derive(
        cls, cvn: str | int | Cvn, imk: bytes | str, pan: str, psn: str | None
    ) -> CardAcEngine:
        """Engine for the ICC master key (`arqc.icc_master_key`) of the issuer master key given
        as bytes or hex; a bad hex key raises ValueError after the CVN is looked up."""
        spec = get_cvn(cvn)
        key = bytes.fromhex(imk) if isinstance(imk, str) else imk
        return cls(spec, derive_icc_mk(key, pan, psn, spec.mk_option))

    @property
    def icc_mk(self) -> bytes:
        """The ICC master key (UDK)."""
        return self.mk.key

    def ac_input(self, tags: Mapping[str, bytes]) -> tuple[bytes, bytes, bytes | None]:
        """(AC data, ATC, UN or None) from the tags, validated as `build_ac_data` does."""
        plan = self.plan
        if type(tags) is dict:
            try:
                vals = plan.fetch(tags)
                lens = tuple(map(len, vals))
            except (KeyError, TypeError):
                lens = None
            if lens is not None and plan.fixed(lens) == plan.fixed_lengths:
                for i, lo, hi in plan.ranges:
                    if not lo <= lens[i] <= hi:
                        break
                else:
                    if all(map(_is_bytes, vals)):
                        return self._assemble(vals)
        data = build_ac_data(self.spec, tags)
        atc = _tag(tags, "9F36")
        return data, atc, _tag(tags, "9F37") if self._method == "mastercard" else None

    def _assemble(self, vals: tuple[bytes, ...]) -> tuple[bytes, bytes, bytes | None]:
        plan = self.plan
        un = vals[plan.un_at] if plan.un_at >= 0 else None
        parts = vals if len(vals) == plan.size else vals[: plan.size]
        at = plan.cvr_at
        if at >= 0:
            start, end = plan.cvr
            parts = (*parts[:at], parts[at][start:end], *parts[at + 1 :])
        return b"".join(parts), vals[plan.atc_at], un

    def session(self, atc: bytes, un: bytes | None = None) -> Alg3Key:
        """The AC session key with its contexts (the ICC master key itself for method 'none')."""
        method = self._method
        if method == "none":
            return self.mk
        if type(atc) is bytes and len(atc) == 2:
            if method == "emv_csk":
                raw = self.mk._tdes(atc + b"\xf0" + _Z5 + atc + b"\x0f" + _Z5)
                return Alg3Key(raw.translate(_PARITY))
            if method == "mastercard" and type(un) is bytes and len(un) == 4:
                raw = self.mk._tdes(atc + b"\xf0\x00" + un + atc + b"\x0f\x00" + un)
                return Alg3Key(raw.translate(_PARITY))
            if method == "pboc":
                inverse = (int.from_bytes(atc, "big") ^ 0xFFFF).to_bytes(2, "big")
                return Alg3Key(self.mk._tdes(_Z6 + atc + _Z6 + inverse))
        return Alg3Key(ac_session_key(method, self.mk.key, atc, un))

    def session_key(self, atc: bytes, un: bytes | None = None) -> bytes:
        """The AC session key bytes (as `arqc.session_key`)."""
        return self.session(atc, un).key

    def generate_ac(self, tags: Mapping[str, bytes]) -> bytes:
        """ARQC/TC/AAC from the transaction tags (as `arqc.generate_ac`)."""
        data, atc, un = self.ac_input(tags)
        return self.session(atc, un).mac(data, self.padding)

    def verify_arqc(self, tags: Mapping[str, bytes], arqc: bytes) -> bool:
        """True when the 8-byte ARQC matches; constant-time comparison."""
        return hmac.compare_digest(self.generate_ac(tags), bytes(arqc))

    def arpc_key(self, session: Alg3Key) -> Alg3Key:
        """The key the CVN computes its ARPC with: the ICC master key or the session key."""
        return self.mk if self.spec.arpc_key == "icc_mk" else session

    def arpc(
        self,
        key: Alg3Key,
        arqc: bytes,
        *,
        arc: bytes | None = None,
        csu: bytes | None = None,
        proprietary: bytes = b"",
    ) -> bytes:
        """ARPC under `key` by the CVN's method: 1 needs the 2-byte ARC, 2 the 4-byte CSU."""
        spec = self.spec
        if spec.arpc_method == 1:
            if arc is None:
                raise CryptoError(f"{spec.name} uses ARPC method 1: give the 2-byte ARC")
            if type(arqc) is bytes and len(arqc) == 8 and type(arc) is bytes and len(arc) == 2:
                x = int.from_bytes(arqc, "big") ^ (int.from_bytes(arc, "big") << 48)
                return key._tdes(x.to_bytes(8, "big"))
            return arpc_method1(key.key, arqc, arc)
        if csu is None:
            raise CryptoError(f"{spec.name} uses ARPC method 2: give the 4-byte CSU")
        if (
            type(arqc) is bytes
            and len(arqc) == 8
            and type(csu) is bytes
            and len(csu) == 4
            and type(proprietary) is bytes
            and len(proprietary) <= 8
        ):
            return key.mac(arqc + csu + proprietary, 2)[:4]
        return arpc_method2(key.key, arqc, csu, proprietary)

    def generate_arpc(
        self,
        arqc: bytes,
        atc: bytes,
        *,
        un: bytes | None = None,
        arc: bytes | None = None,
        csu: bytes | None = None,
        proprietary: bytes = b"",
    ) -> bytes:
        """ARPC for the CVN from the ARQC and ATC (as `arqc.generate_arpc`)."""
        key = self.mk if self.spec.arpc_key == "icc_mk" else self.session(atc, un)
        return self.arpc(key, arqc, arc=arc, csu=csu, proprietary=proprietary)
