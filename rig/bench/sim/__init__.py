"""Simulated instruments. Each runs as its own process (`python -m rig.bench.sim.NAME`) behind a
real OS interface (pty, TCP, vpcd) and announces readiness with one JSON line on stdout."""
