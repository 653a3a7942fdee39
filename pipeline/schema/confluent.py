"""A Confluent Schema Registry client, for the Confluent wire format.

Subjects follow the RecordNameStrategy (the record's full name, e.g.
``dev.auditpipe.EventBatch``), since one codec serves several topics. Ids are cached:
the registry is asked once per schema per process.

Reading, only the registry's own answer that an id does not exist (HTTP 404) makes a
message an ``unknown_schema`` dead letter. A registry that does not answer, or answers
with an error of its own (5xx, or 401/403 until an operator fixes the credentials), is
asked again with back-off for as long as it takes: the batch waits, so the partition is
held and nothing is dead-lettered for an outage (``retries_total`` counts the retries,
the worker exports it). An id found unknown is remembered for a while, so a flood of
messages naming made-up ids costs one request per id, not one per message.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from pipeline.schema.registry import SchemaRegistry, SchemaVersion, UnknownSchemaError, make_version

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
UNKNOWN_TTL_S = 60.0
"""How long an id the registry said it does not know is taken as unknown without asking."""
UNKNOWN_CACHE = 10_000


class RegistryError(RuntimeError):
    """The schema registry refused or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RegistryUnavailable(RegistryError):
    """The registry did not answer, and the caller does not wait for it (a command)."""


class RegistryStopped(RuntimeError):
    """The worker stopped while the registry was still not answering."""


class ConfluentRegistry:
    def __init__(
        self,
        url: str,
        local: SchemaRegistry,
        timeout_s: float = 10.0,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        stopping: threading.Event | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.local = local
        self.timeout_s = timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.waits = stopping is not None
        """Only a caller that can be stopped (the worker) waits out an outage; a command
        gets RegistryUnavailable at once (one line, exit 3)."""
        self.stopping = stopping or threading.Event()
        self.retries_total = 0
        self._ids: dict[bytes, int] = {}
        self._versions: dict[int, SchemaVersion] = {}
        self._unknown: dict[int, float] = {}
        self._lock = threading.Lock()

    def id_for(self, version: SchemaVersion) -> int:
        """Register (or find) the schema under its record name; returns its global id."""
        with self._lock:
            if version.fingerprint in self._ids:
                return self._ids[version.fingerprint]
        subject = _full_name(version.raw)
        reply = self._request(
            "POST",
            f"/subjects/{subject}/versions",
            {"schema": json.dumps(version.raw), "schemaType": "AVRO"},
        )
        schema_id = int(reply["id"])
        with self._lock:
            self._ids[version.fingerprint] = schema_id
            self._versions[schema_id] = version
        return schema_id

    def version_for(self, schema_id: int) -> SchemaVersion:
        """The writer schema of an id; known locally by fingerprint, or built from the reply."""
        with self._lock:
            if schema_id in self._versions:
                return self._versions[schema_id]
            if self._unknown.get(schema_id, 0.0) > time.monotonic():
                raise UnknownSchemaError(f"schema id {schema_id}: not in the registry")
        try:
            reply = self._asked_until_answered("GET", f"/schemas/ids/{schema_id}")
        except RegistryUnavailable:
            raise
        except RegistryError as exc:  # the registry's own word: no such id
            self._remember_unknown(schema_id)
            raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from None
        try:
            raw = json.loads(reply["schema"])
        except (KeyError, TypeError, ValueError):
            raise UnknownSchemaError(f"schema id {schema_id}: no schema in the reply") from None
        version = self._match_local(raw)
        with self._lock:
            self._versions[schema_id] = version
        return version

    def _asked_until_answered(self, method: str, path: str) -> dict[str, Any]:
        """The registry's reply; RegistryError only for a 404 (the id does not exist).
        Anything else is retried with back-off and full jitter until it answers, or
        RegistryStopped once the worker stops."""
        delay = self.retry_initial_s
        attempt = 0
        while True:
            try:
                reply = self._request(method, path, None)
                if attempt:
                    log.warning("schema registry %s answered after %d retries", self.url, attempt)
                return reply
            except RegistryError as exc:
                if exc.status == 404:
                    raise
                if not self.waits:
                    raise RegistryUnavailable(f"{exc}", exc.status) from None
                attempt += 1
                self.retries_total += 1
                log.warning(
                    "schema registry %s: %s (attempt %d, next in %.1f s; the partition waits)",
                    self.url, exc, attempt, delay,
                )  # fmt: skip
            if self.stopping.wait(random.uniform(delay / 2, delay)):
                raise RegistryStopped(f"schema registry {self.url}: not answering, stopping")
            delay = min(delay * 2, self.retry_max_s)

    def _remember_unknown(self, schema_id: int) -> None:
        with self._lock:
            if len(self._unknown) >= UNKNOWN_CACHE:
                self._unknown.clear()
            self._unknown[schema_id] = time.monotonic() + UNKNOWN_TTL_S

    def _match_local(self, raw: dict[str, Any]) -> SchemaVersion:
        name = _full_name(raw)
        for local in self.local.versions():
            if _full_name(local.raw) == name:
                candidate = make_version(local.name, 0, raw)
                try:
                    return self.local.by_fingerprint(candidate.fingerprint)
                except UnknownSchemaError:
                    return candidate  # a version this reader has not shipped: resolve to latest
        raise UnknownSchemaError(f"registry schema {name} is no type this reader knows")

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                result: dict[str, Any] = json.loads(reply.read())
                return result
        except urllib.error.HTTPError as exc:
            raise RegistryError(
                f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}", exc.code
            ) from None
        except OSError as exc:
            raise RegistryError(f"{method} {path}: {exc}") from None


def _full_name(raw: dict[str, Any]) -> str:
    namespace = raw.get("namespace")
    return f"{namespace}.{raw['name']}" if namespace else str(raw["name"])
