"""Avro schemas, the message codec, the event vocabulary and the validation of events.

The bottom layer: imports nothing of the pipeline outside ``pipeline.schema`` (and the
optional C code), so every other part may use it."""

import threading

from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry


def codec_for(
    registry_url: str | None = None, stopping: threading.Event | None = None
) -> AvroCodec:
    """The codec the configuration asks for: single-object encoding, or the Confluent wire
    format when a schema registry is set (``kafka.schema_registry_url``). ``stopping``
    ends the wait for a registry that does not answer."""
    local = SchemaRegistry.load()
    if registry_url:
        from pipeline.schema.confluent import ConfluentRegistry

        return AvroCodec(local, ConfluentRegistry(registry_url, local, stopping=stopping))
    return AvroCodec(local)
