"""The ClickHouse server process of the local stack: ``python -m pipeline.stack.chserver``.

chdb-core embeds ClickHouse 26.9. Only its one-shot ``_chdb.query`` runs the real
clickhouse-local, which can open HTTP and native listeners; it reads config.xml from the
working directory. The call has to block for as long as the server should run: it reads
stdin to its end, and this process holds the write end of its own stdin pipe, so the read
never ends and SIGTERM is the way to stop the server.

Secured, the engine's listeners are internal and ``AUDITPIPE_TLS_FRONT`` names the TLS
front (``tlsfront.py``) that this process serves on the stack's ports.
"""

from __future__ import annotations

import os

SERVE = (
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT count() FROM file('/dev/stdin', 'LineAsString')"
)


SERVE_SECURED = (
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM system.numbers SETTINGS max_block_size = 1"
)
"""Secured, the engine's login (``default``) may not read files: it waits by sleeping a
second per row of an endless table instead (no CPU)."""
TLS_FRONT_ENV = "AUDITPIPE_TLS_FRONT"


def main() -> None:
    front = os.environ.pop(TLS_FRONT_ENV, "")
    if front:
        from pipeline.stack.tlsfront import start_encoded

        start_encoded(front)
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    os.set_inheritable(write_end, False)
    from chdb import _chdb  # imported late: the engine starts on import

    # TabSeparated becomes the server's default format; clickhouse-connect needs it.
    _chdb.query(SERVE_SECURED if front else SERVE, "TabSeparated")  # type: ignore[attr-defined]  # private, untyped


if __name__ == "__main__":
    main()
