"""EMVCo QR payment payloads: merchant-presented (mpm) and consumer-presented (cpm)."""
