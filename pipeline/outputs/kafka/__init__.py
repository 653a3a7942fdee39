"""Kafka topics as a destination: alerts, dead letters and the checkpoints' copy."""

from pipeline.outputs.kafka.healthcheck import healthcheck
from pipeline.outputs.kafka.output import TopicsOutput

__all__ = ["TopicsOutput", "healthcheck"]
