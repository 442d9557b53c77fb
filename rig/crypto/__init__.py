"""Payment cryptography on `cryptography` only: KCV, PIN blocks, DUKPT, MACs, TR-31, EMV keys, ODA."""
