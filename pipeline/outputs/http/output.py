"""The http destination: a batch of alerts, shaped, as NDJSON in one POST; durable at the
collector when it answers 2xx."""

from __future__ import annotations

import threading

from pydantic import SecretStr

from pipeline.config import ForwardDestination, read_secret
from pipeline.outputs.base import Records
from pipeline.outputs.forwarding.base import ForwardingOutput
from pipeline.outputs.forwarding.tls import client_context
from pipeline.outputs.http.request_builder import compressed, ndjson
from pipeline.outputs.http.service import HttpService


class HttpOutput(ForwardingOutput):
    def __init__(self, dest: ForwardDestination, stopping: threading.Event) -> None:
        assert dest.url is not None  # the config requires it
        super().__init__(dest, stopping)
        self.url = dest.url
        tls = client_context(dest) if dest.url.startswith("https:") else None
        self.service = HttpService(dest.timeout_s, tls)
        self.headers = {"Content-Type": "application/x-ndjson", **dest.headers}
        if dest.authorization_file is not None:
            self.headers["Authorization"] = read_secret(
                SecretStr(""), dest.authorization_file, f"{dest.name}.authorization"
            )

    def write(self, records: Records) -> None:
        body, encoding = compressed(
            ndjson(self.shape(item) for item in records.items), self.dest.gzip
        )
        headers = {**self.headers, **encoding}
        self.deliver(
            lambda: self.service.post(self.url, body, headers),
            f"posting {len(records.items)} alerts",
        )

    def close(self) -> None:
        self.service.close()
