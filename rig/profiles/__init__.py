"""Card profiles: the YAML model of a simulated card, read by the card simulator and the host."""

from rig.profiles.errors import ProfileError
from rig.profiles.load import IssuerKeys, issuer_keys, load_all, load_capks, load_profile
from rig.profiles.model import CardProfile

__all__ = [
    "CardProfile",
    "IssuerKeys",
    "ProfileError",
    "issuer_keys",
    "load_all",
    "load_capks",
    "load_profile",
]
