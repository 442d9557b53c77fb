"""Card simulator: card applications served to pcscd through the vsmartcard vpcd protocol."""
