"""The output of each destination type (each in its folder under ``outputs/``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from pipeline.config import ForwardDestination, KafkaConfig
from pipeline.kafka_clients import client_args
from pipeline.outputs.forwarding.base import ForwardingOutput
from pipeline.outputs.http.output import HttpOutput
from pipeline.outputs.kafka_topic.output import KafkaTopicOutput
from pipeline.outputs.splunk_hec.output import HecOutput
from pipeline.outputs.syslog.output import SyslogOutput

Builder = Callable[[ForwardDestination, threading.Event, KafkaConfig], ForwardingOutput]

BUILDERS: dict[str, Builder] = {
    "splunk_hec": lambda dest, stopping, _: HecOutput(dest, stopping),
    "syslog": lambda dest, stopping, _: SyslogOutput(dest, stopping),
    "http": lambda dest, stopping, _: HttpOutput(dest, stopping),
    # On auditpipe's own cluster, with its connection settings (TLS, SASL).
    "kafka": lambda dest, stopping, kafka: KafkaTopicOutput(dest, stopping, client_args(kafka)),
}


def build(
    dest: ForwardDestination, stopping: threading.Event, kafka: KafkaConfig
) -> ForwardingOutput:
    return BUILDERS[dest.type](dest, stopping, kafka)
