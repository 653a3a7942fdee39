"""A real rsyslogd (Debian's package) started by a test: one plain TCP input and one TLS
input (RFC 5425, the gtls driver with certificates from ``pipeline/stack/certs.py``),
writing each message it receives as one line: ``hostname|app-name|msgid|msg``."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from pipeline.stack.certs import StackTLS
from pipeline.stack.process import free_ports

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
CONFIG = """
global(workDirectory="{root}/work"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}"
       maxMessageSize="256k")
module(load="imtcp" maxSessions="50")
input(type="imtcp" port="{tcp}" address="127.0.0.1" name="plain")
input(type="imtcp" port="{tls}" address="127.0.0.1" name="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="fields" type="string"
         string="%hostname%|%app-name%|%msgid%|%inputname%|%msg%\\n")
action(type="omfile" file="{root}/received.log" template="fields"
       flushOnTXEnd="on" asyncWriting="off")
"""


def available() -> bool:
    return Path(RSYSLOGD).exists()


class Rsyslog:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "work").mkdir(parents=True, exist_ok=True)
        self.tls = StackTLS(root / "tls")
        self.tls.ensure()
        self.tcp_port, self.tls_port = free_ports(2)
        self.config = root / "rsyslog.conf"
        self.config.write_text(
            CONFIG.format(
                root=root,
                ca=self.tls.ca,
                cert=self.tls.server_cert,
                key=self.tls.server_key,
                tcp=self.tcp_port,
                tls=self.tls_port,
            )
        )
        self.received = root / "received.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.root / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "rsyslogd.err", "ab"),  # noqa: SIM115 (the process keeps it)
        )
        import socket

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"rsyslogd did not start: {(self.root / 'rsyslogd.err').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def lines(self) -> list[str]:
        if not self.received.exists():
            return []
        return self.received.read_text(encoding="utf-8").splitlines()
