"""Reference acquirer host: server, issuer, journal, key store, control API and CLI."""
