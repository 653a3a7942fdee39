"""The TLS front of the secured local stack's ClickHouse.

The embedded engine (chdb-core's clickhouse-local) opens only plain HTTP and native TCP
listeners: ``SYSTEM START LISTEN HTTPS`` fails with "supports only TCP and HTTP
listeners". So, secured, the engine listens on two internal loopback ports and this
front terminates TLS on the stack's ClickHouse ports (HTTPS, and the secure native
protocol) and relays the bytes, as a TLS-terminating proxy in front of a ClickHouse
server would. A client certificate is asked for and verified when one is sent; the
ClickHouse users' passwords still apply behind it.

Runs in a thread of the ClickHouse server process (``chserver``), so the stack still has
one process per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

RELAY_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Front:
    """One TLS port relaying to one plain internal port."""

    port: int
    to_port: int


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_OPTIONAL  # verified when sent (mutual TLS)
    return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _relay_to(
    to_port: int,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", to_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    return handle


async def _serve(fronts: list[Front], context: ssl.SSLContext, ready: threading.Event) -> None:
    servers = [
        await asyncio.start_server(_relay_to(f.to_port), "127.0.0.1", f.port, ssl=context)
        for f in fronts
    ]
    ready.set()
    await asyncio.gather(*(s.serve_forever() for s in servers))


def start(fronts: list[Front], context: ssl.SSLContext) -> None:
    """Serve the fronts from a daemon thread; returns once they listen."""
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(_serve(fronts, context, ready)), name="tls-front", daemon=True
    )
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the TLS front did not start listening")


def encode(fronts: list[Front], cert: Path, key: Path, ca: Path) -> str:
    """The front's settings as one string (an environment variable of the server)."""
    ports = ",".join(f"{f.port}:{f.to_port}" for f in fronts)
    return f"{cert}|{key}|{ca}|{ports}"


def start_encoded(value: str) -> None:
    cert, key, ca, ports = value.split("|")
    fronts = [Front(*map(int, pair.split(":"))) for pair in ports.split(",")]
    start(fronts, server_context(Path(cert), Path(key), Path(ca)))
