"""The ClickHouse 26.9 server of the local stack, from PyPI chdb-core.

Secured (``stack.secure``), the stack's ports speak HTTPS and the secure native protocol
through the TLS front (``tlsfront.py``: the embedded engine cannot listen with TLS), the
engine listens on internal loopback ports, and the ``default`` user has the password of
``$AUDITPIPE_HOME/tls/clickhouse.password``.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import sys
import urllib.request

from pipeline.config import Settings
from pipeline.resources import resource_path
from pipeline.stack.certs import StackTLS
from pipeline.stack.chserver import TLS_FRONT_ENV
from pipeline.stack.process import ManagedProcess, free_ports, port_is_open
from pipeline.stack.tlsfront import Front, encode

ADMIN_USER = "admin"
ENGINE_LOGIN = """<default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <grants>
        <query>GRANT SYSTEM LISTEN ON *.*</query>
        <query>GRANT SELECT ON system.numbers</query>
      </grants>
    </default>"""
"""``default`` of the secured stack: the engine's own login (chserver.SERVE_SECURED)."""


class ClickHouseServer:
    """Runs the embedded engine with HTTP and native listeners under $AUDITPIPE_HOME/clickhouse."""

    def __init__(self, settings: Settings, tls: StackTLS | None = None, shard_of: str = "") -> None:
        self.settings = settings
        self.tls = tls
        self.shard_of = shard_of
        """A cluster's ``remote_servers`` XML: the server is one of its shards, and its
        users are those of ``users_for_shards``."""
        self.root = settings.home.resolve() / "clickhouse"
        self.config = self.root / "config.xml"
        stack = settings.stack
        self.process = ManagedProcess(
            name="clickhouse",
            pid_file=self.root / "clickhouse.pid",
            log_file=self.root / "logs" / "server.out",
            ports=(stack.clickhouse_http_port, stack.clickhouse_tcp_port),
            cmdline_marker="pipeline.stack.chserver",
        )

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.settings.stack.clickhouse_http_port}"

    def write_config(self, http_port: int, tcp_port: int) -> None:
        template = resource_path("deploy", "clickhouse", "config.xml").read_text()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            template.replace("{http_port}", str(http_port))
            .replace("{tcp_port}", str(tcp_port))
            .replace("{data_path}", f"{self.root / 'data'}/")
            .replace("{log_path}", str(self.root / "logs"))
            .replace("{users_xml}", str(self._users_xml()))
            .replace("</clickhouse>", f"{self.shard_of}</clickhouse>")
        )

    def _users_xml(self) -> os.PathLike[str]:
        """The shipped users. Secured, the administrator is ``admin`` with the stack's
        password (the file holds only its SHA-256), and ``default`` keeps only what the
        embedded engine's own login needs to open its listeners and wait (it logs itself
        in as ``default`` without a password, and ClickHouse tells loopback clients
        apart from it by nothing): no database, no file, no access management."""
        shipped = resource_path("deploy", "clickhouse", "users.xml")
        if self.shard_of:
            path = self.root / "users.xml"
            path.write_text(users_for_shards(shipped.read_text()))
            return path
        if self.tls is None:
            return shipped
        text = shipped.read_text()
        start = text.index("<default>", text.index("<users>"))
        end = text.index("</default>", start) + len("</default>")
        digest = hashlib.sha256(self.tls.password("clickhouse").encode()).hexdigest()
        admin = (
            text[start:end]
            .replace("<default>", f"<{ADMIN_USER}>", 1)
            .replace("</default>", f"</{ADMIN_USER}>")
            .replace(
                "<password></password>", f"<password_sha256_hex>{digest}</password_sha256_hex>"
            )
        )
        path = self.root / "users.xml"
        path.write_text(text[:start] + ENGINE_LOGIN + "\n    " + admin + text[end:])
        return path

    def start(self) -> bool:
        """Start the server unless it runs already. True when this call started it."""
        if self.process.pid() is not None:
            return False
        self.process.check_ports_free()
        stack = self.settings.stack
        env = None
        if self.tls is None:
            self.write_config(stack.clickhouse_http_port, stack.clickhouse_tcp_port)
        else:
            http, tcp = free_ports(2)
            self.write_config(http, tcp)
            fronts = [
                Front(stack.clickhouse_http_port, http),
                Front(stack.clickhouse_tcp_port, tcp),
            ]
            env = dict(os.environ)
            env[TLS_FRONT_ENV] = encode(
                fronts, self.tls.server_cert, self.tls.server_key, self.tls.ca
            )
        self.process.spawn(
            [sys.executable, "-m", "pipeline.stack.chserver"], cwd=self.root, env=env
        )
        return True

    def wait_ready(self) -> float:
        return self.process.wait_ready(self._answers, self.settings.stack.start_timeout_s)

    def _answers(self) -> bool:
        if not port_is_open(self.settings.stack.clickhouse_tcp_port):
            return False
        context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        try:
            with urllib.request.urlopen(
                f"{self.endpoint}/ping", timeout=1, context=context
            ) as resp:
                return bool(resp.read() == b"Ok.\n")
        except OSError:
            return False


def users_for_shards(text: str) -> str:
    """The shipped users for a server of a sharded cluster (deploy/clickhouse/cluster/).

    The shards' tables are in ``audit_local`` and the Distributed ones in ``audit``;
    with the cluster's ``<secret>``, a shard runs each query as the user who sent it to
    the front, so a user needs its grants on both databases and its row filters on the
    shards' tables, where they are applied. A tenant filter on a Distributed table
    itself is refused by ClickHouse ("cannot be pushed into the storage read"): an
    analyst's filters move to ``audit_local``; an all-rows filter (``1``: admin, ingest)
    is kept on both, since a table with a policy shows nothing to users without one."""
    text = re.sub(
        r"<query>GRANT (\S+(?:\([^)]*\))?) ON audit\.(\w+)</query>",
        r"<query>GRANT \1 ON audit.\2</query><query>GRANT \1 ON audit_local.\2</query>",
        text,
    )

    def filters(match: re.Match[str]) -> str:
        body = match[1]
        local = f"<audit_local>{body}</audit_local>"
        if re.search(r"<filter>(?!1</filter>)", body):
            return local  # a tenant's filters: on the shards' tables only
        return match[0] + local

    return re.sub(r"<audit>(.*?)</audit>", filters, text, flags=re.S)
