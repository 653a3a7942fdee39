"""The kafka destination: a batch of alerts, shaped, as JSON messages on a topic;
delivered when every in-sync replica has it."""

from __future__ import annotations

import threading
from typing import Any

from pipeline.config import ForwardDestination
from pipeline.outputs.base import Records
from pipeline.outputs.forwarding.base import ForwardingOutput
from pipeline.outputs.forwarding.retry import Refused
from pipeline.outputs.kafka_topic.request_builder import messages, too_large
from pipeline.outputs.kafka_topic.service import KafkaTopicService


class KafkaTopicOutput(ForwardingOutput):
    def __init__(
        self, dest: ForwardDestination, stopping: threading.Event, client_args: dict[str, Any]
    ) -> None:
        assert dest.topic is not None  # the config requires it
        super().__init__(dest, stopping)
        self.service = KafkaTopicService(client_args, dest.topic, dest.timeout_s)

    def write(self, records: Records) -> None:
        batch = messages(records.items, self.shape)
        position = too_large(batch, self.service.max_request_size)
        if position is not None:
            raise Refused(
                f"message of {len(batch[position][1])} bytes is over the producer's "
                f"max_request_size ({self.service.max_request_size})"
            )
        self.deliver(lambda: self.service.send(batch), f"sending {len(batch)} alerts")

    def close(self) -> None:
        self.service.close()
