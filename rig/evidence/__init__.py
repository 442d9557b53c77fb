"""Evidence: what crossed each interface, redacted once where it is written."""

from rig.evidence.redact import mask_pan, redact_bytes, redact_value
from rig.evidence.transcript import Direction, Transcript, null_transcript, read_transcript

__all__ = [
    "Direction",
    "Transcript",
    "mask_pan",
    "null_transcript",
    "read_transcript",
    "redact_bytes",
    "redact_value",
]
