"""The card host's card: a profile turned into the application stack the vpcd link serves.

Stack, outermost first: `T0Transport` (61xx / 6Cxx rules) -> `FaultyCard` (run-time faults) ->
the profile's application (`EmvCardApplication` for kind emv, `PurseCardApplication` for kind
purse). A capture draft (a profile with a `capture` section and no keys) is served too, with
placeholder test keys (`rig.profiles.capture.load_for_serving`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.card.application import CardApplication
from rig.card.faults import FaultError, FaultyCard, T0Transport
from rig.card.purse_app import DEFAULT_PIN, PurseCardApplication, build_atr
from rig.prepaid.purse import Purse, PurseKeys
from rig.profiles import CardProfile, ProfileError
from rig.profiles.capture import load_for_serving

INTERFACES = ("contact", "contactless")


class CardHostError(ValueError):
    """A profile the card host cannot serve, with the reason and the fix."""


@dataclass
class ServedCard:
    """What the card host serves now: the outer application, its fault layer and the profile."""

    profile: CardProfile
    path: Path
    app: CardApplication
    faults: FaultyCard
    inner: CardApplication
    startup_faults: list[dict[str, Any]] = field(default_factory=list)


def purse_application(
    profile: CardProfile, *, state_dir: Path | None = None
) -> PurseCardApplication:
    """The purse card for a `kind: purse` profile (PIN from risk.pin, else the test PIN).

    With `state_dir`, balance, counters, log and PIN tries persist in `state_dir/<id>.json`.
    """
    section = profile.purse
    if section is None:
        raise CardHostError(f"profile {profile.id}: kind purse needs a purse section")
    asn = bytes.fromhex(section.asn)
    keys = PurseKeys.from_master_keys(
        bytes.fromhex(section.keys.mlk),
        bytes.fromhex(section.keys.mpk),
        bytes.fromhex(section.keys.mtk),
        asn,
    )
    purse = Purse(
        keys,
        balance=section.initial_balance,
        online_counter=section.online_counter,
        offline_counter=section.offline_counter,
        max_balance=section.max_balance,
        key_version=section.key_version,
        algorithm=section.algorithm,
    )
    app = PurseCardApplication(
        purse,
        asn,
        aid=bytes.fromhex(section.aid),
        atr=bytes.fromhex(profile.atr) if profile.atr else build_atr(b"POSRIG PURSE"),
        label=section.label.encode("ascii", "replace"),
        pin=profile.risk.pin or DEFAULT_PIN,
        pin_try_limit=profile.risk.pin_try_limit,
        pin_required_for_load=profile.risk.pin is not None,
    )
    if state_dir is not None:
        from rig.card.emv_state import CardStateError
        from rig.card.purse_state import persist

        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            persist(app, profile, state_dir / f"{profile.id}.json")
        except (CardStateError, OSError) as exc:
            raise CardHostError(f"card state for {profile.id}: {exc}") from None
    return app


def emv_application(
    profile: CardProfile, *, state_dir: Path | None, interface: str
) -> CardApplication:
    """The EMV card for a `kind: emv` profile; ATC, PIN tries and blocking persist in state_dir."""
    from rig.card.emv_app import EmvAppError, EmvCardApplication
    from rig.card.emv_state import CardState, CardStateError

    state = None
    try:
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            state = CardState.load(state_dir / f"{profile.id}.json", profile)
        return EmvCardApplication(profile, state=state, interface=interface)
    except (CardStateError, EmvAppError, OSError) as exc:
        raise CardHostError(f"card state for {profile.id}: {exc}") from None


def build(
    path: str | Path,
    *,
    state_dir: Path | None = None,
    interface: str = "contact",
    remove: Any = None,
) -> ServedCard:
    """Load a profile (or capture draft) and build its served application stack."""
    if interface not in INTERFACES:
        raise CardHostError(f"interface {interface!r}: use contact or contactless")
    p = Path(path)
    try:
        profile = load_for_serving(p)
    except ProfileError as exc:
        raise CardHostError(str(exc)) from None
    if interface not in profile.interfaces:
        raise CardHostError(
            f"{p}: profile {profile.id} has interfaces {profile.interfaces}, not {interface}"
        )
    if profile.kind == "purse":
        inner: CardApplication = purse_application(profile, state_dir=state_dir)
    elif profile.kind == "emv":
        inner = emv_application(profile, state_dir=state_dir, interface=interface)
    else:
        raise CardHostError(f"{p}: profile {profile.id} is kind {profile.kind}: no chip to serve")
    faulty = FaultyCard(inner, remove=remove)
    served = ServedCard(profile, p, T0Transport(faulty), faulty, inner)
    served.startup_faults = arm_profile_faults(served)
    return served


def arm_profile_faults(served: ServedCard) -> list[dict[str, Any]]:
    """Arm the profile's `faults` section (mute is the slot's, reported back for it to apply)."""
    f = served.profile.faults
    armed: list[dict[str, Any]] = []
    try:
        if f.delay_ms:
            armed.append(served.faults.arm("delay", ms=f.delay_ms))
        for name, sw in f.status_words.items():
            armed.append(served.faults.arm("sw", ins=name, sw=sw))
        if f.corrupt_cryptogram:
            armed.append(served.faults.arm("corrupt_cryptogram", once=False))
        if f.remove_at_command is not None and served.faults.remove_hook is not None:
            armed.append(served.faults.arm("remove_at", n=f.remove_at_command))
    except FaultError as exc:
        raise CardHostError(f"{served.path}: faults: {exc}") from None
    if f.mute:
        armed.append({"kind": "mute"})
    return armed
