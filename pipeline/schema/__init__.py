"""Avro schemas, the message codec and the validation of events."""

from pipeline.config import Settings
from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry


def codec_for(settings: Settings) -> AvroCodec:
    """The codec the configuration asks for: single-object encoding, or the Confluent wire
    format when ``kafka.schema_registry_url`` is set."""
    local = SchemaRegistry.load()
    if settings.kafka.schema_registry_url:
        from pipeline.schema.confluent import ConfluentRegistry

        return AvroCodec(local, ConfluentRegistry(settings.kafka.schema_registry_url, local))
    return AvroCodec(local)
