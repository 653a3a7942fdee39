"""The connection to a syslog receiver: UDP datagrams, or a TCP/TLS stream kept open and
opened again after a failure.

TCP gives no application-level acknowledgement: ``sendall`` returning means the kernel
took the bytes, not that the receiver stored them. After each batch the service waits
until the receiver's host has acknowledged every byte (the socket's send queue is
empty) and checks that the receiver has not closed or reset the connection; if it has,
or the acknowledgement does not come within the timeout, the batch is reported
unavailable and sent again on a new connection (duplicates rather than loss). What it
cannot catch is a receiver that took bytes into its own buffers and then died before
storing them; RELP would close that gap and rsyslog has it, but QRadar and ArcSight do
not take it.
"""

from __future__ import annotations

import fcntl
import select
import socket
import ssl
import struct
import time

from pipeline.outputs.forwarding.retry import Unavailable
from pipeline.outputs.syslog.request_builder import UDP_MAX

SIOCOUTQ = 0x5411
"""Linux: bytes in a TCP socket's send queue not yet acknowledged by the peer."""


def _unacknowledged(sock: socket.socket) -> int:
    try:
        raw = fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0")
    except OSError:  # not Linux, or not a TCP socket: nothing to wait for
        return 0
    return int(struct.unpack("i", raw)[0])


class SyslogService:
    def __init__(
        self,
        host: str,
        port: int,
        protocol: str,
        timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.protocol = host, port, protocol
        self.timeout_s = timeout_s
        self.tls = tls
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self.protocol == "udp":
            sock = socket.socket(
                socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM
            )
            sock.connect((self.host, self.port))
            return sock
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        return sock

    def send_datagrams(self, messages: list[bytes]) -> None:
        sock = self._sock = self._sock or self._connect()
        for message in messages:
            sock.send(message[:UDP_MAX])

    def send_stream(self, payload: bytes) -> None:
        """Write ``payload`` and check the connection is still open; raise Unavailable
        (and drop the connection) otherwise."""
        try:
            sock = self._sock = self._sock or self._connect()
            sock.sendall(payload)
            self._confirmed(sock)
        except (OSError, Unavailable) as exc:
            self.close()
            raise Unavailable(f"syslog {self.protocol}://{self.host}:{self.port}: {exc}") from None

    def _confirmed(self, sock: socket.socket) -> None:
        """Wait until the receiver's host acknowledged every byte (the send queue is
        empty, SIOCOUTQ), then check that the receiver has not closed or reset the
        connection meanwhile."""
        deadline = time.monotonic() + self.timeout_s
        while _unacknowledged(sock) > 0:
            if time.monotonic() > deadline:
                raise Unavailable("the receiver did not acknowledge the batch in time")
            time.sleep(0.001)
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return
        try:  # a syslog receiver sends nothing: readable means closed, reset or an alert
            data = (
                sock.recv(1) if isinstance(sock, ssl.SSLSocket) else sock.recv(1, socket.MSG_PEEK)
            )
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        if not data:
            raise Unavailable("the receiver closed the connection")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
