"""Instrument drivers. Each speaks to its device only through a real OS interface (serial port,
PC/SC, VISA, TCP) and records what crosses it in a `rig.evidence.Transcript`."""
