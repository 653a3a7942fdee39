"""The syslog destination: alerts shaped (CEF, OCSF or ECS JSON), framed and written to
the receiver; ``write`` returns once the receiver's host acknowledged the batch
(``service.py`` says what that does and does not prove)."""

from __future__ import annotations

import threading

from pipeline.config import ForwardDestination
from pipeline.outputs.base import Records
from pipeline.outputs.forwarding.base import ForwardingOutput
from pipeline.outputs.forwarding.tls import client_context
from pipeline.outputs.syslog.request_builder import message, octet_counted
from pipeline.outputs.syslog.service import SyslogService


class SyslogOutput(ForwardingOutput):
    def __init__(self, dest: ForwardDestination, stopping: threading.Event) -> None:
        super().__init__(dest, stopping)
        tls = client_context(dest) if dest.protocol == "tls" else None
        self.service = SyslogService(dest.host, dest.port, dest.protocol, dest.timeout_s, tls)

    def write(self, records: Records) -> None:
        messages = [message(item, self.shape(item)) for item in records.items]
        if self.dest.protocol == "udp":
            send = lambda: self.service.send_datagrams(messages)  # noqa: E731
        else:
            payload = octet_counted(messages)
            send = lambda: self.service.send_stream(payload)  # noqa: E731
        self.deliver(send, f"sending {len(messages)} alerts")

    def close(self) -> None:
        self.service.close()
