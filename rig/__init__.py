"""posrig: hardware-in-the-loop test and certification rig for payment terminals."""

__version__ = "0.1.0"
