"""The splunk_hec destination: a batch of alerts as one HEC request; delivered when HEC
answers 200 (and, with ``ack``, once it reports the batch indexed)."""

from __future__ import annotations

import threading

from pydantic import SecretStr

from pipeline.config import ForwardDestination, read_secret
from pipeline.outputs.base import Records
from pipeline.outputs.forwarding.base import ForwardingOutput
from pipeline.outputs.forwarding.tls import client_context
from pipeline.outputs.http.request_builder import compressed
from pipeline.outputs.splunk_hec.request_builder import events_body
from pipeline.outputs.splunk_hec.service import HecService


class HecOutput(ForwardingOutput):
    def __init__(self, dest: ForwardDestination, stopping: threading.Event) -> None:
        assert dest.url is not None  # the config requires url and token_file
        super().__init__(dest, stopping)
        token = read_secret(SecretStr(""), dest.token_file, f"{dest.name}.token")
        tls = client_context(dest) if dest.url.startswith("https:") else None
        self.service = HecService(dest.url, token, dest.timeout_s, tls)

    def write(self, records: Records) -> None:
        sourcetype = self.dest.sourcetype or f"auditpipe:{self.dest.records.removesuffix('s')}"
        raw = events_body(records.items, self.shape, sourcetype, self.dest.index)
        body, encoding = compressed(raw, self.dest.gzip)
        self.deliver(
            lambda: self.service.send(body, encoding, self.dest.ack, self.stopping),
            f"sending {len(records.items)} alerts to HEC",
        )

    def close(self) -> None:
        self.service.close()
