"""A null-modem cable between two pty links: bytes written at one end are read at the other.

The rig's drivers open one end and the device under test the other, so the rig's port outlives
a power-cycled device exactly like a real cable. Usage:
    python -m rig.bench.sim.nullmodem --a /run/.../ecr --b /run/.../dut-ecr
"""

from __future__ import annotations

import argparse
import os
import selectors

from rig.bench.sim.common import PtyLink, announce_ready, exit_on_sigterm


def pump(a: PtyLink, b: PtyLink) -> None:
    """Copy bytes both ways until terminated."""
    sel = selectors.DefaultSelector()
    sel.register(a.master, selectors.EVENT_READ, b.master)
    sel.register(b.master, selectors.EVENT_READ, a.master)
    while True:
        for key, _ in sel.select():
            try:
                data = os.read(key.fd, 4096)
            except OSError:
                continue
            if data:
                os.write(key.data, data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", required=True, help="symlink path of end A")
    parser.add_argument("--b", required=True, help="symlink path of end B")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    a, b = PtyLink(args.a), PtyLink(args.b)
    try:
        announce_ready(a=str(a.link), b=str(b.link))
        pump(a, b)
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
