from __future__ import annotations

import orjson

from pipeline.outputs.forwarding.shapes import shape_for
from pipeline.outputs.kafka_topic.request_builder import messages, too_large
from tests.outputs.alerts_for_tests import alerts, items


def test_each_alert_is_one_message_keyed_by_its_sandbox_in_its_format() -> None:
    sent = alerts(5)
    batch = messages(items(sent), shape_for("ecs"))
    assert [key for key, _ in batch] == [a.key for a in sent]
    assert [orjson.loads(value)["event"]["id"] for _, value in batch] == [a.alert_id for a in sent]


def test_the_first_message_over_the_limit_is_found_before_anything_is_sent() -> None:
    sent = alerts(4)
    sent[2] = alerts(1, title="x" * 5_000)[0]
    batch = messages(items(sent), shape_for("ocsf"))
    assert too_large(batch, 4_000) == 2
    assert too_large(batch, 100_000) is None
    assert too_large([(b"k", b"v" * 1000)], 1000) == 0  # the record's overhead counts too
