"""Placeholder acquirer host: echoes every frame back (asyncio TCP), until the real host exists.

Usage:
    python -m rig.bench.sim.echohost --listen 127.0.0.1:0 [--framing none|len2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from rig.bench.sim.common import announce_failure, announce_ready, exit_on_sigterm
from rig.bench.sim.faultproxy import Sessions, parse_hostport, read_frame


async def echo(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: str, sessions: Sessions
) -> None:
    """Write each frame (or chunk) back as received."""
    sessions.enter(writer)
    try:
        while frame := await read_frame(reader, framing):
            writer.write(frame)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        sessions.leave(writer)


async def serve(listen: str, framing: str) -> None:
    try:
        host, port = parse_hostport(listen)
        sessions = Sessions()
        server = await asyncio.start_server(lambda r, w: echo(r, w, framing, sessions), host, port)
    except (ValueError, OSError) as exc:
        announce_failure(f"echohost cannot listen on {listen}: {exc}")
        return
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    announce_ready(listen=f"{bound_host}:{bound_port}")
    async with server:
        await stopping.wait()
        await sessions.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on (port 0: any)")
    parser.add_argument("--framing", choices=("none", "len2"), default="none")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.framing))


if __name__ == "__main__":
    main()
