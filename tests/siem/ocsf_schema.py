"""The official OCSF JSON schemas of the pinned version, offline (PyPI ocsf-json-schema)."""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from pipeline.siem.ocsf import OCSF_VERSION


@cache
def _schemas() -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))


@cache
def validator(class_uid: int, profiles: tuple[str, ...]) -> Draft202012Validator:
    schemas = _schemas()
    name = schemas.lookup_class_name_from_uid(class_uid=class_uid)
    return Draft202012Validator(schemas.get_class_schema(name, list(profiles)))


def problems(record: dict[str, Any]) -> list[str]:
    """Every way ``record`` breaks its class's schema, with the profiles it declares
    (``metadata.profiles``), empty when it is valid."""
    profiles = tuple(record["metadata"].get("profiles", ()))
    errors = validator(record["class_uid"], profiles).iter_errors(record)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
