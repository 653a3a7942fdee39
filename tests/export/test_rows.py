from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pipeline.export.rows import EVENT_FIELDS, as_alert, as_event
from pipeline.rules.alerts import ALERT_COLUMNS


def test_a_stored_event_row_becomes_the_record_the_shapes_take() -> None:
    values = {
        "event_id": "e-1",
        "ts": datetime(2026, 11, 28, 0, 0, 0, 123000, tzinfo=UTC),
        "actor_user": "ci",
        "actor_uid": 1000,
        "actor_pid": 42,
        "actor_ppid": 1,
        "actor_process": "bash",
        "actor_cmdline": "make",
        "actor_parent_process": "/usr/bin/bash",
        "actor_parent_cmdline": "bash ci.sh",
        "prev_hash": bytes(32),
        "hash": bytes(range(32)),
    }
    row = tuple(values.get(name) for name in EVENT_FIELDS)
    event = as_event(row)
    assert event["ts"] == 1_795_824_000_123
    assert event["actor"] == {
        "user": "ci",
        "uid": 1000,
        "pid": 42,
        "ppid": 1,
        "process": "bash",
        "cmdline": "make",
        "parent_process": "/usr/bin/bash",
        "parent_cmdline": "bash ci.sh",
    }
    assert event["prev_hash"] is None  # the chain's start: zeros
    assert event["hash"] == bytes(range(32)).hex()
    assert not any(key.startswith("actor_") for key in event)


def test_a_stored_alert_row_has_its_id_as_text_and_times_in_ms() -> None:
    uid = uuid.uuid4()
    values = {
        "alert_id": uid,
        "first_ts": datetime(2026, 11, 28, tzinfo=UTC),
        "last_ts": datetime(2026, 11, 28, 0, 0, 1, tzinfo=UTC),
    }
    alert = as_alert(tuple(values.get(name) for name in ALERT_COLUMNS))
    assert alert["alert_id"] == str(uid)
    assert alert["last_ts"] - alert["first_ts"] == 1000
