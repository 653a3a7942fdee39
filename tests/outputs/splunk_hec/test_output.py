"""The splunk_hec destination against the protocol-level HEC receiver
(tests/outputs/splunk_hec/receiver.py; not Splunk itself)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import ForwardDestination
from pipeline.forward.deliver import deliver
from pipeline.outputs.base import Records
from pipeline.outputs.forwarding.retry import Refused, Stopped
from pipeline.outputs.splunk_hec.output import HecOutput
from tests.outputs.alerts_for_tests import alerts, items
from tests.outputs.splunk_hec.receiver import HecReceiver


@pytest.fixture
def receiver() -> Iterator[HecReceiver]:
    made = HecReceiver(ack=True, ack_delay_s=0.3)
    made.start()
    yield made
    made.stop()


def destination(receiver: HecReceiver, tmp_path: Path, **changed: object) -> ForwardDestination:
    token = tmp_path / "hec.token"
    token.write_text(receiver.token + "\n")
    values: dict[str, object] = {
        "name": "splunk",
        "type": "splunk_hec",
        "url": receiver.url,
        "token_file": token,
        "ack": receiver.ack,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
        "timeout_s": 2,
    }
    return ForwardDestination(**(values | changed))


def test_a_batch_is_delivered_once_and_indexed(receiver: HecReceiver, tmp_path: Path) -> None:
    output = HecOutput(destination(receiver, tmp_path), threading.Event())
    sent = alerts(50)
    started = time.monotonic()
    output.write(Records("forwarded", items(sent)))
    assert time.monotonic() - started >= 0.3  # it waited for the indexer's acknowledgement
    assert [e["event"]["finding_info"]["uid"] for e in receiver.events] == [
        a.alert_id for a in sent
    ]
    first = receiver.events[0]
    assert first["host"] == "sb-0" and first["sourcetype"] == "auditpipe:alert"
    assert first["fields"] == {"tenant": "tenant-0", "rule_id": "CRED-000", "severity": "low"}
    assert first["time"] == 1_795_860_000.5


def test_busy_and_refused_credentials_are_retried_not_dropped(
    receiver: HecReceiver, tmp_path: Path
) -> None:
    output = HecOutput(destination(receiver, tmp_path), threading.Event())
    receiver.busy = True
    threading.Timer(0.5, lambda: setattr(receiver, "busy", False)).start()
    output.write(Records("forwarded", items(alerts(3))))
    assert output.retries >= 1 and len(receiver.events) == 3
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token")
    stopping = threading.Event()
    bad = HecOutput(destination(receiver, tmp_path, token_file=wrong), stopping)
    threading.Timer(0.5, stopping.set).start()
    with pytest.raises(Stopped):  # retried until stopped: a token is fixed, not skipped
        bad.write(Records("forwarded", items(alerts(1))))
    assert bad.retries >= 1 and len(receiver.events) == 3


def test_an_alert_too_large_is_found_and_refused_alone(
    receiver: HecReceiver, tmp_path: Path
) -> None:
    receiver.max_content_length = 20_000
    output = HecOutput(destination(receiver, tmp_path, gzip=False), threading.Event())
    batch = alerts(16)
    batch[11] = alerts(1, title="x" * 50_000)[0]
    refused = deliver(output, items(batch))
    assert [position for position, _ in refused] == [11]
    assert "HTTP 413" in refused[0][1]
    delivered = [e["event"]["finding_info"]["uid"] for e in receiver.events]
    assert delivered == [a.alert_id for i, a in enumerate(batch) if i != 11]


def test_refused_is_raised_for_data_the_collector_will_never_take(tmp_path: Path) -> None:
    receiver = HecReceiver(ack=False)
    receiver.start()
    try:
        receiver.max_content_length = 10
        output = HecOutput(destination(receiver, tmp_path, gzip=False), threading.Event())
        with pytest.raises(Refused, match="413"):
            output.write(Records("forwarded", items(alerts(1))))
    finally:
        receiver.stop()
