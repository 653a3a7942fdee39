"""One POST to a collector, and what its answer means (``forwarding/retry.py``).

2xx: taken. 408, 429, 5xx, a connection error or a timeout: ``Unavailable`` (retried;
a ``Retry-After`` header is logged). 401 and 403: ``Unavailable`` too, logged as a
credentials problem (an operator fixes it; nothing is dead-lettered for it). Any other
4xx (400 bad data, 413 payload too large): ``Refused``, with the status and the start of
the answer as the reason.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import urllib3

from pipeline.outputs.forwarding.retry import Refused, Unavailable

RETRY_STATUSES = frozenset({408, 429})
CREDENTIALS_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class HttpService:
    def __init__(self, timeout_s: float, tls: ssl.SSLContext | None) -> None:
        self.pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=2,
            retries=False,
            timeout=urllib3.Timeout(total=timeout_s),
            ssl_context=tls,
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            response = self.pool.request("POST", url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(f"POST {url}: {_cause(exc)}") from None
        return check(url, Answer(response.status, response.data or b""))

    def close(self) -> None:
        self.pool.clear()


def check(url: str, answer: Answer) -> Answer:
    status = answer.status
    if 200 <= status < 300:
        return answer
    said = answer.body[:200].decode("utf-8", "replace").strip()
    if status in CREDENTIALS_STATUSES:
        raise Unavailable(f"POST {url}: HTTP {status}, the credentials were refused ({said})")
    if status in RETRY_STATUSES or status >= 500:
        raise Unavailable(f"POST {url}: HTTP {status} ({said})")
    raise Refused(f"HTTP {status}: {said}")


def _cause(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # urllib3 wraps the OS error as .reason
    return str(reason or exc)
