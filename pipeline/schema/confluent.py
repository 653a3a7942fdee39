"""A Confluent Schema Registry client, for the Confluent wire format.

Subjects follow the RecordNameStrategy (the record's full name, e.g.
``dev.auditpipe.EventBatch``), since one codec serves several topics. Ids are cached:
the registry is asked once per schema per process.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

from pipeline.schema.registry import SchemaRegistry, SchemaVersion, UnknownSchemaError, make_version

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(RuntimeError):
    """The schema registry refused or could not be reached."""


class ConfluentRegistry:
    def __init__(self, url: str, local: SchemaRegistry, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.local = local
        self.timeout_s = timeout_s
        self._ids: dict[bytes, int] = {}
        self._versions: dict[int, SchemaVersion] = {}
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
        try:
            reply = self._request("GET", f"/schemas/ids/{schema_id}", None)
        except RegistryError as exc:
            raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from None
        raw = json.loads(reply["schema"])
        version = self._match_local(raw)
        with self._lock:
            self._versions[schema_id] = version
        return version

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
            raise RegistryError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except OSError as exc:
            raise RegistryError(f"{method} {path}: {exc}") from None


def _full_name(raw: dict[str, Any]) -> str:
    namespace = raw.get("namespace")
    return f"{namespace}.{raw['name']}" if namespace else str(raw["name"])
