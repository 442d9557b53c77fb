"""Host key store: working and base keys encrypted at rest (AES-256-GCM) under a local master key.

The file is JSON holding, per key, its name, kind, key check value and the GCM ciphertext; the
clear key exists only in memory. Each ciphertext is bound to its name and kind (GCM associated
data), so entries cannot be swapped or relabelled. Nothing here logs, and no error message
carries key material: key check values (KCVs) identify keys instead. Card issuer master keys
(EMV IMKs, purse master keys) are imported from the card profiles by `sync_issuer_keys`.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rig.crypto.keys import kcv_aes_cmac, kcv_tdes

if TYPE_CHECKING:
    from rig.profiles import CardProfile

__all__ = [
    "EMV_KEYS",
    "ENV_VAR",
    "FORMAT",
    "PURSE_KEYS",
    "IssuerKeySync",
    "KeyStore",
    "KeyStoreError",
    "algorithm_for",
    "emv_key_name",
    "issuer_key_material",
    "load_master_key",
    "purse_key_name",
    "sync_issuer_keys",
    "write_master_key",
]

ENV_VAR = "POSRIG_HOST_MASTER_KEY"
"""Environment variable holding the master key as 64 hex digits (test benches only)."""

FORMAT = "posrig-keystore/1"
_VERIFIER = b"posrig key store master key verifier"
_MASTER_LEN = 32
_TDES_LENGTHS = (8, 16, 24)
_AES_LENGTHS = (16, 24, 32)


class KeyStoreError(ValueError):
    """A key store problem: names the file or key name and the fix, never the key itself."""


def algorithm_for(kind: str) -> str:
    """'aes' when the kind names AES (e.g. 'bdk-aes', 'aes'), else 'tdes'."""
    return "aes" if "aes" in kind.lower() else "tdes"


def _kcv_hex(key: bytes, algorithm: str) -> str:
    raw = kcv_aes_cmac(key) if algorithm == "aes" else kcv_tdes(key)
    return raw.hex().upper()


def _parse_master(text: str, where: str) -> bytes:
    cleaned = "".join(text.split())
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise KeyStoreError(
            f"master key in {where} is not hex; it must be {2 * _MASTER_LEN} hex digits "
            "(make one with `rig host init`)"
        ) from None
    if len(key) != _MASTER_LEN:
        raise KeyStoreError(
            f"master key in {where} is {len(key)} bytes; it must be {_MASTER_LEN} bytes "
            f"({2 * _MASTER_LEN} hex digits, AES-256)"
        )
    return key


def load_master_key(path: str | os.PathLike[str] | None) -> bytes:
    """Master key from `path` (hex text file) when given, else from $POSRIG_HOST_MASTER_KEY."""
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="ascii")
        except FileNotFoundError:
            raise KeyStoreError(
                f"master key file {p} does not exist; create it with `rig host init` "
                f"or set {ENV_VAR}"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise KeyStoreError(
                f"master key file {p} cannot be read: {e.__class__.__name__}"
            ) from None
        return _parse_master(text, f"file {p}")
    env = os.environ.get(ENV_VAR)
    if env:
        return _parse_master(env, f"${ENV_VAR}")
    raise KeyStoreError(
        f"no master key: pass a master key file path or set {ENV_VAR} "
        f"to {2 * _MASTER_LEN} hex digits"
    )


def write_master_key(path: str | os.PathLike[str]) -> bytes:
    """Create a new random master key file (hex, mode 0600); refuses to overwrite one."""
    p = Path(path)
    key = secrets.token_bytes(_MASTER_LEN)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyStoreError(
            f"master key file {p} already exists; load it with load_master_key"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key


def _check_master(master_key: bytes) -> AESGCM:
    if not isinstance(master_key, (bytes, bytearray)) or len(master_key) != _MASTER_LEN:
        raise KeyStoreError(
            f"master key must be {_MASTER_LEN} bytes (AES-256); use load_master_key()"
        )
    return AESGCM(bytes(master_key))


def _aad(name: str, kind: str) -> bytes:
    return f"{FORMAT}|{name}|{kind}".encode()


class KeyStore:
    """Named keys encrypted under a master key; `describe()` shows name, kind and KCV only."""

    def __init__(self, path: Path, aead: AESGCM, doc: dict[str, Any]) -> None:
        self.path = path
        self._aead = aead
        self._doc = doc
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r}, {len(self._doc['keys'])} keys)"

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], master_key: bytes, *, overwrite: bool = False
    ) -> KeyStore:
        """New empty key store at `path`; refuses to replace an existing file unless told to."""
        p = Path(path)
        aead = _check_master(master_key)
        if p.exists() and not overwrite:
            raise KeyStoreError(
                f"key store {p} already exists; open it with KeyStore.open or remove it first"
            )
        nonce = secrets.token_bytes(12)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "verifier": {
                "nonce": nonce.hex(),
                "ct": aead.encrypt(nonce, _VERIFIER, FORMAT.encode()).hex(),
            },
            "keys": {},
        }
        store = cls(p, aead, doc)
        store._save()
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], master_key: bytes) -> KeyStore:
        """Open an existing key store; KeyStoreError when the file or the master key is wrong."""
        p = Path(path)
        aead = _check_master(master_key)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyStoreError(
                f"key store {p} does not exist; create it with `rig host init`"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise KeyStoreError(
                f"key store {p} is unreadable or not JSON ({e.__class__.__name__}); "
                "restore it from a backup or re-create it"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise KeyStoreError(f"{p} is not a posrig key store (format {FORMAT!r} expected)")
        try:
            ver = doc["verifier"]
            plain = aead.decrypt(
                bytes.fromhex(ver["nonce"]), bytes.fromhex(ver["ct"]), FORMAT.encode()
            )
        except InvalidTag:
            raise KeyStoreError(
                f"wrong master key for key store {p}: authentication failed; use the master key "
                f"it was created with (master key file or {ENV_VAR})"
            ) from None
        except (KeyError, TypeError, ValueError):
            raise KeyStoreError(f"key store {p} has a damaged verifier; re-create it") from None
        if plain != _VERIFIER or not isinstance(doc.get("keys"), dict):
            raise KeyStoreError(f"key store {p} is damaged; re-create it")
        return cls(p, aead, doc)

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps(self._doc, indent=1, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _seal(self, name: str, key: bytes, kind: str) -> dict[str, Any]:
        if not isinstance(name, str) or not name or name != name.strip():
            raise KeyStoreError(f"key name {name!r} must be a non-empty string without spaces")
        if not isinstance(kind, str) or not kind:
            raise KeyStoreError(f"key {name!r}: kind must be a non-empty string, e.g. 'tpk'")
        if not isinstance(key, (bytes, bytearray)):
            raise KeyStoreError(f"key {name!r}: key must be bytes")
        algorithm = algorithm_for(kind)
        lengths = _AES_LENGTHS if algorithm == "aes" else _TDES_LENGTHS
        if len(key) not in lengths:
            raise KeyStoreError(
                f"key {name!r} of kind {kind!r} ({algorithm.upper()}) is {len(key)} bytes; "
                f"expected one of {lengths} (put 'aes' in the kind for an AES key)"
            )
        key = bytes(key)
        nonce = secrets.token_bytes(12)
        return {
            "kind": kind,
            "algorithm": algorithm,
            "length": len(key),
            "kcv": _kcv_hex(key, algorithm),
            "nonce": nonce.hex(),
            "ct": self._aead.encrypt(nonce, key, _aad(name, kind)).hex(),
        }

    def put(self, name: str, key: bytes, *, kind: str) -> str:
        """Store (or replace) `key` under `name`; returns its KCV. Kind 'x-aes' means AES."""
        return self.put_many([(name, key, kind)])[0]

    def put_many(self, entries: Iterable[tuple[str, bytes, str]]) -> list[str]:
        """Store (or replace) several (name, key, kind) with one file write; returns the KCVs."""
        sealed = [(name, self._seal(name, key, kind)) for name, key, kind in entries]
        if not sealed:
            return []
        with self._lock:
            self._doc["keys"].update(sealed)
            self._save()
        return [entry["kcv"] for _, entry in sealed]

    def _entry(self, name: str) -> dict[str, Any]:
        try:
            return self._doc["keys"][name]
        except KeyError:
            raise KeyStoreError(
                f"no key named {name!r} in key store {self.path}; known: "
                + (", ".join(sorted(self._doc["keys"])) or "none")
            ) from None

    def get(self, name: str) -> bytes:
        """The clear key named `name` (in memory only)."""
        entry = self._entry(name)
        try:
            key = self._aead.decrypt(
                bytes.fromhex(entry["nonce"]),
                bytes.fromhex(entry["ct"]),
                _aad(name, entry["kind"]),
            )
        except (InvalidTag, KeyError, ValueError):
            raise KeyStoreError(
                f"key {name!r} in key store {self.path} fails authentication (tampered or "
                "moved between entries); put it again"
            ) from None
        if _kcv_hex(key, entry["algorithm"]) != entry["kcv"]:
            raise KeyStoreError(f"key {name!r} does not match its stored KCV; put it again")
        return key

    def has(self, name: str) -> bool:
        """True when a key named `name` is stored."""
        return name in self._doc["keys"]

    def delete(self, name: str) -> None:
        """Remove the key named `name`."""
        self._entry(name)
        with self._lock:
            del self._doc["keys"][name]
            self._save()

    def names(self) -> list[str]:
        """Stored key names, sorted."""
        return sorted(self._doc["keys"])

    def kind(self, name: str) -> str:
        """The kind given when `name` was stored."""
        return str(self._entry(name)["kind"])

    def algorithm(self, name: str) -> str:
        """'tdes' or 'aes'."""
        return str(self._entry(name)["algorithm"])

    def kcv(self, name: str) -> str:
        """Key check value in hex: TDES 3 bytes (E(K, 0)), AES 5 bytes (CMAC of zeros)."""
        return str(self._entry(name)["kcv"])

    def describe(self) -> list[dict[str, Any]]:
        """One row per key: name, kind, algorithm, length and KCV — never the key."""
        return [
            {
                "name": name,
                "kind": e["kind"],
                "algorithm": e["algorithm"],
                "length": e["length"],
                "kcv": e["kcv"],
            }
            for name, e in sorted(self._doc["keys"].items())
        ]


# ---- card issuer master keys ----------------------------------------------------------------

EMV_KEYS = ("imk_ac", "imk_smi", "imk_smc")
"""Issuer master keys of an EMV application (profile `applications[i].crypto`)."""
PURSE_KEYS = ("mlk", "mpk", "mtk")
"""Purse master keys of a prepaid profile (profile `purse.keys`)."""


def emv_key_name(key: str, profile_id: str, index: int) -> str:
    """Key store name of an EMV issuer master key: `imk_ac:<profile id>:<application index>`."""
    return f"{key}:{profile_id}:{index}"


def purse_key_name(key: str, profile_id: str) -> str:
    """Key store name of a purse master key: `purse_mlk:<profile id>`."""
    return f"purse_{key}:{profile_id}"


def issuer_key_material(profile: CardProfile) -> list[tuple[str, str, bytes]]:
    """(key store name, kind, clear key) of every issuer master key a card profile holds."""
    out = [
        (emv_key_name(k, profile.id, i), k.replace("_", "-"), bytes.fromhex(getattr(app.crypto, k)))
        for i, app in enumerate(profile.applications)
        for k in EMV_KEYS
    ]
    if profile.purse is not None:
        keys = profile.purse.keys
        out += [
            (purse_key_name(k, profile.id), f"purse-{k}", bytes.fromhex(getattr(keys, k)))
            for k in PURSE_KEYS
        ]
    return out


@dataclass
class IssuerKeySync:
    """Issuer master keys as held by the store (clear, in memory) and what was just imported."""

    keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    imported: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def sync_issuer_keys(
    store: KeyStore, profiles: Mapping[str, CardProfile], *, replace: Collection[str] = ()
) -> IssuerKeySync:
    """Import each profile's issuer master keys the store lacks (and, for profile ids in
    `replace`, those that differ), then read them all back from the store. A stored key that
    differs from its profile raises KeyStoreError naming profile, key, both KCVs and the fix."""
    keys: dict[str, bytes] = {}
    writes: list[tuple[str, bytes, str]] = []
    owner: dict[str, str] = {}
    differ: list[tuple[str, str]] = []
    for pid, profile in profiles.items():
        for name, kind, key in issuer_key_material(profile):
            if store.has(name):
                stored = store.get(name)
                if store.kind(name) == kind and hmac.compare_digest(stored, key):
                    keys[name] = stored
                    continue
                if pid not in replace:
                    mine = _kcv_hex(key, algorithm_for(kind))
                    kcvs = f"store KCV {store.kcv(name)}, profile KCV {mine}"
                    differ.append((pid, f"card profile {pid!r} key {name} ({kcvs})"))
                    continue
            writes.append((name, key, kind))
            owner[name] = pid
    if differ:
        again = " ".join(f"--reimport {pid}" for pid in dict.fromkeys(p for p, _ in differ))
        raise KeyStoreError(
            f"issuer keys in key store {store.path} differ from the card profiles: "
            + "; ".join(text for _, text in differ)
            + ". The profile changed (re-generated?) after its keys were imported: re-import with "
            f"`rig host keys --data {store.path.parent} {again}` "
            "(or re-create the store with `rig host init --force`), then restart the host"
        )
    imported: dict[str, list[dict[str, str]]] = {}
    for (name, _, kind), kcv in zip(writes, store.put_many(writes), strict=True):
        keys[name] = store.get(name)
        imported.setdefault(owner[name], []).append({"name": name, "kind": kind, "kcv": kcv})
    return IssuerKeySync(keys, imported)
