"""HEC's endpoints: the event POST (``Authorization: Splunk <token>``, a request channel
when acknowledgement is on) and the acknowledgement poll.

With ``ack``, a POST's 200 only means "received": the answer carries an ``ackId``, and
the batch counts as delivered once ``/services/collector/ack`` reports that id indexed.
Until then it is not committed; if the acknowledgement does not come within
``ACK_WAIT_FACTOR`` times the request timeout (an indexer restarted and forgot it), the
batch is reported unavailable and sent again (at least once: Splunk may then hold it
twice).
"""

from __future__ import annotations

import ssl
import threading
import uuid

import orjson

from pipeline.outputs.forwarding.retry import Unavailable, sleep_unless_stopped
from pipeline.outputs.http.service import HttpService

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
ACK_POLL_S = 0.2
ACK_WAIT_FACTOR = 6


class HecService:
    def __init__(
        self, base_url: str, token: str, timeout_s: float, tls: ssl.SSLContext | None
    ) -> None:
        self.base = base_url.rstrip("/")
        self.http = HttpService(timeout_s, tls)
        self.timeout_s = timeout_s
        self.channel = str(uuid.uuid4())
        self.headers = {
            "Authorization": f"Splunk {token}",
            "X-Splunk-Request-Channel": self.channel,
            "Content-Type": "application/json",
        }

    def send(
        self, body: bytes, encoding: dict[str, str], ack: bool, stopping: threading.Event
    ) -> None:
        answer = self.http.post(self.base + EVENT_PATH, body, {**self.headers, **encoding})
        if not ack:
            return
        try:
            ack_id = int(orjson.loads(answer.body)["ackId"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise Unavailable(
                "HEC answered without an ackId: is indexer acknowledgement on for this token?"
            ) from None
        self._wait_indexed(ack_id, stopping)

    def _wait_indexed(self, ack_id: int, stopping: threading.Event) -> None:
        url = f"{self.base}{ACK_PATH}?channel={self.channel}"
        body = orjson.dumps({"acks": [ack_id]})
        waited = 0.0
        while waited < ACK_WAIT_FACTOR * self.timeout_s:
            answer = self.http.post(url, body, self.headers)
            try:
                if orjson.loads(answer.body)["acks"].get(str(ack_id)) is True:
                    return
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise Unavailable(
                    f"HEC ack poll: unreadable answer {answer.body[:100]!r}"
                ) from None
            sleep_unless_stopped(stopping, ACK_POLL_S)
            waited += ACK_POLL_S
        raise Unavailable(f"HEC did not acknowledge ackId {ack_id} as indexed in {waited:.0f} s")

    def close(self) -> None:
        self.http.close()
