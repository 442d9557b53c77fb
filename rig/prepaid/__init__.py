"""Prepaid / stored-value purse logic shared by the card simulator, the terminal and the host."""

from rig.prepaid.purse import Purse, PurseError, PurseKeys

__all__ = ["Purse", "PurseError", "PurseKeys"]
