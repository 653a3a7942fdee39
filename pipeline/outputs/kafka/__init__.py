"""Kafka topics as a destination: alerts, dead letters and the checkpoints' copy."""

from pipeline.outputs.kafka.healthcheck import KafkaRefused, healthcheck, worker_topics
from pipeline.outputs.kafka.output import TopicsOutput

__all__ = ["KafkaRefused", "TopicsOutput", "healthcheck", "worker_topics"]
