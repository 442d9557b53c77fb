"""EMV data: BER-TLV, the tag dictionary, DOLs and the terminal-side decision tables."""
