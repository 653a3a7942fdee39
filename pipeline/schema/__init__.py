"""Avro schemas, the message codec and the validation of events."""
