"""Payment cryptography on `cryptography` only: KCV, PIN blocks, DUKPT, MAC, TR-31, EMV, ODA."""
