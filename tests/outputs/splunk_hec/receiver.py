"""A local receiver of Splunk's HTTP Event Collector protocol, for tests: no Splunk runs
here, so this implements the protocol as Splunk documents it ("Format events for HTTP
Event Collector", "HTTP Event Collector REST API endpoints", "About HTTP Event Collector
Indexer Acknowledgment"). It is protocol-level, not Splunk itself.

- ``POST /services/collector/event``: ``Authorization: Splunk <token>`` (401 code 2
  without it, 403 code 4 for a wrong one); a body of JSON event objects one after the
  other, gzip when ``Content-Encoding: gzip``; each needs ``event`` (400 code 12 with
  ``invalid-event-number``), bad JSON is 400 code 6, an empty body 400 code 5; a body
  over ``max_content_length`` is 413; ``busy`` makes it 503 code 9 ("Server is busy").
  Events of one request are indexed all or none.
- With ``ack``: requests need ``X-Splunk-Request-Channel`` (400 code 10), answers carry
  an ``ackId`` per channel, and ``POST /services/collector/ack?channel=`` with
  ``{"acks": [ids]}`` answers ``{"acks": {"id": true|false}}``, true once indexed
  (after ``ack_delay_s``).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from pipeline.stack.process import free_ports


class HecReceiver:
    def __init__(self, token: str = "hec-token", ack: bool = False, ack_delay_s: float = 0.0):
        self.token, self.ack, self.ack_delay_s = token, ack, ack_delay_s
        self.port = free_ports(1)[0]
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self.busy = False
        self.max_content_length = 1_000_000
        self._acks: dict[str, dict[int, float]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                status, answer = receiver.handle(self)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length)
        auth = request.headers.get("Authorization")
        if not auth:
            return 401, {"text": "Token is required", "code": 2}
        if auth != f"Splunk {self.token}":
            return 403, {"text": "Invalid token", "code": 4}
        url = urlparse(request.path)
        if url.path == "/services/collector/ack":
            return self._ack_status(parse_qs(url.query).get("channel", [""])[0], body)
        if url.path != "/services/collector/event":
            return 404, {"text": "The requested URL was not found on this server.", "code": 404}
        if self.busy:
            return 503, {"text": "Server is busy", "code": 9}
        if length > self.max_content_length:
            return 413, {"text": "Content too large", "code": 413}
        channel = request.headers.get("X-Splunk-Request-Channel")
        if self.ack and not channel:
            return 400, {"text": "Data channel is missing", "code": 10}
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        events, problem = _events(body.decode("utf-8"))
        if problem is not None:
            return 400, problem
        with self._lock:
            self.events.extend(events)
            if not self.ack:
                return 200, {"text": "Success", "code": 0}
            acks = self._acks.setdefault(channel or "", {})
            ack_id = len(acks)
            acks[ack_id] = time.monotonic() + self.ack_delay_s
        return 200, {"text": "Success", "code": 0, "ackId": ack_id}

    def _ack_status(self, channel: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if not self.ack:
            return 400, {"text": "ACK is disabled", "code": 14}
        asked = json.loads(body)["acks"]
        now = time.monotonic()
        with self._lock:
            known = self._acks.get(channel, {})
            return 200, {"acks": {str(i): i in known and known[i] <= now for i in asked}}


def _events(text: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            break
        try:
            event, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            return [], {
                "text": "Invalid data format",
                "code": 6,
                "invalid-event-number": len(events),
            }
        if not isinstance(event, dict) or "event" not in event:
            return [], {
                "text": "Event field is required",
                "code": 12,
                "invalid-event-number": len(events),
            }
        events.append(event)
    if not events:
        return [], {"text": "No data", "code": 5}
    return events, None
