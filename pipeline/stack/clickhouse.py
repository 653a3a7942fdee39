"""The ClickHouse 26.9 server of the local stack, from PyPI chdb-core."""

from __future__ import annotations

import sys
import urllib.request

from pipeline.config import Settings
from pipeline.resources import resource_path
from pipeline.stack.process import ManagedProcess, port_is_open


class ClickHouseServer:
    """Runs the embedded engine with HTTP and native listeners under $AUDITPIPE_HOME/clickhouse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
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
        return f"http://127.0.0.1:{self.settings.stack.clickhouse_http_port}"

    def write_config(self) -> None:
        template = resource_path("deploy", "clickhouse", "config.xml").read_text()
        stack = self.settings.stack
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            template.replace("{http_port}", str(stack.clickhouse_http_port))
            .replace("{tcp_port}", str(stack.clickhouse_tcp_port))
            .replace("{data_path}", f"{self.root / 'data'}/")
            .replace("{log_path}", str(self.root / "logs"))
            .replace("{users_xml}", str(resource_path("deploy", "clickhouse", "users.xml")))
        )

    def start(self) -> bool:
        """Start the server unless it runs already. True when this call started it."""
        if self.process.pid() is not None:
            return False
        self.process.check_ports_free()
        self.write_config()
        self.process.spawn([sys.executable, "-m", "pipeline.stack.chserver"], cwd=self.root)
        return True

    def wait_ready(self) -> float:
        return self.process.wait_ready(self._answers, self.settings.stack.start_timeout_s)

    def _answers(self) -> bool:
        if not port_is_open(self.settings.stack.clickhouse_tcp_port):
            return False
        try:
            with urllib.request.urlopen(f"{self.endpoint}/ping", timeout=1) as resp:
                return bool(resp.read() == b"Ok.\n")
        except OSError:
            return False
