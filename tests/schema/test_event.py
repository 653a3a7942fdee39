"""Validation of collector input (JSON objects) into schema-v1 events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.schema.event import InvalidEvent, normalize_event, parse_event_line, parse_ts

NOW = 1_795_860_000_000


def minimal(**overrides: Any) -> dict[str, Any]:
    event = {"tenant": "acme", "sandbox_id": "sb-1", "category": "network", "action": "connect"}
    event.update(overrides)
    return event


def test_missing_ids_and_time_are_filled() -> None:
    event = normalize_event(minimal(), now_ms=NOW)
    assert len(event["event_id"]) == 36
    assert event["ts"] == NOW
    assert event["seq"] is None  # per sandbox: the publisher assigns it
    assert (event["level"], event["outcome"]) == ("info", "success")
    assert event["actor"] == {
        "user": "",
        "uid": None,
        "pid": None,
        "ppid": None,
        "process": "",
        "cmdline": "",
        "parent_process": "",
        "parent_cmdline": "",
    }


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1_795_860_000_123, 1_795_860_000_123),
        ("2026-11-28T10:00:00Z", 1_795_860_000_000),
        ("2026-11-28T11:00:00.250+01:00", 1_795_860_000_250),
    ],
)
def test_ts_is_epoch_ms_or_rfc3339(ts: Any, expected: int) -> None:
    assert parse_ts(ts) == expected


@pytest.mark.parametrize(
    ("ts", "problem"),
    [
        (1_795_860_000, "looks like seconds"),
        ("2026-11-28 10:00:00", "no UTC offset"),
        ("yesterday", "not RFC 3339"),
        (17.5, "got float"),
        (True, "got bool"),
        (2**63, "beyond the largest Avro long"),
    ],
)
def test_bad_ts_is_rejected_with_reason(ts: Any, problem: str) -> None:
    with pytest.raises(InvalidEvent, match=problem):
        parse_ts(ts)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tenant": None}, "tenant: required"),
        ({"tenant": 7}, "tenant: expected a string, got int"),
        ({"category": "dance"}, "category: 'dance' is not one of"),
        ({"level": "loud"}, "level: 'loud' is not one of"),
        ({"seq": "3"}, "seq: expected an integer, got str"),
        ({"seq": 0}, "seq: must be >= 1"),
        ({"bytes": -1}, "bytes: must be >= 0"),
        ({"bytes": 2**63}, "bytes: 9223372036854775808 is beyond the largest Avro long"),
        ({"actor": {"uid": 2**64}}, "actor.uid: .* is beyond the largest Avro long"),
        ({"actor": "root"}, "actor: expected an object, got str"),
        ({"actor": {"pid": "12"}}, "actor.pid: expected an integer, got str"),
        ({"actor": {"shell": "sh"}}, "actor.shell: unknown field"),
        ({"hostname": "x"}, "hostname: unknown field"),
        ({"hash": "abc"}, "hash: expected 64 hex digits"),
        ({"attributes": ["a"]}, "attributes: expected an object, got list"),
        ({"object": "x" * 70_000}, "object: longer than"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidEvent, match=message.replace("(", r"\(")):
        normalize_event(minimal(**overrides), now_ms=NOW)


def test_not_an_object() -> None:
    with pytest.raises(InvalidEvent, match="expected a JSON object, got list"):
        normalize_event([1, 2], now_ms=NOW)


def test_attributes_keep_scalars_as_text() -> None:
    event = normalize_event(
        minimal(
            attributes={"port": 443, "tls": True, "sni": "a.b", "none": None, "nested": {"k": [1]}}
        ),
        now_ms=NOW,
    )
    assert event["attributes"] == {
        "port": "443",
        "tls": "true",
        "sni": "a.b",
        "nested": '{"k":[1]}',
    }


def test_hash_hex_becomes_bytes() -> None:
    event = normalize_event(minimal(hash="ab" * 32, prev_hash=None), now_ms=NOW)
    assert event["hash"] == bytes([0xAB]) * 32
    assert event["prev_hash"] is None


def test_parse_event_line_matches_normalize_event_on_every_kind_of_line() -> None:
    import orjson

    from pipeline.schema.event import InvalidEvent, event_to_json, parse_event_line
    from pipeline.sim.simulate import FleetSimulator

    lines = [orjson.dumps(event_to_json(e)) for e in FleetSimulator(5, seed=4).events(500)]
    lines += [
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x"}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x", "actor": null,'
        b' "ts": "2026-11-28T10:00:00+01:00", "attributes": {"n": 3, "ok": true, "no": null}}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x", "bytes": 0,'
        b' "actor": {"uid": 0, "user": null}, "level": null, "object": null}',
    ]
    for line in lines:
        expected = normalize_event(orjson.loads(line), now_ms=5)
        got = parse_event_line(line, now_ms=5)
        if "event_id" not in orjson.loads(line):
            got["event_id"] = expected["event_id"]  # random
        assert got == expected, line

    bad = [
        b'{"tenant": "", "sandbox_id": "s", "category": "api", "action": "x"}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "kernel", "action": "x"}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x", "colour": 1}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x", "ts": 1795860000}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x",'
        b' "actor": {"shell": "sh"}}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x", "seq": 0}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x",'
        b' "ts": 9223372036854775808}',
        b'{"tenant": "a", "sandbox_id": "s", "category": "api", "action": "x",'
        b' "bytes": 9223372036854775808}',
    ]
    for line in bad:
        with pytest.raises(InvalidEvent) as slow:
            normalize_event(orjson.loads(line), now_ms=5)
        with pytest.raises(InvalidEvent) as fast:
            parse_event_line(line, now_ms=5)
        assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize("field", ["uid", "pid", "ppid"])
def test_actor_ids_beyond_their_column_are_refused_at_the_edge(field: str) -> None:
    line = orjson.dumps({"tenant": "t", "sandbox_id": "s", "category": "process",
                         "action": "exec", "actor": {field: 2**32}})  # fmt: skip
    with pytest.raises(InvalidEvent, match=rf"actor\.{field}: 4294967296 is beyond the largest"):
        parse_event_line(line, now_ms=0)
    ok = orjson.dumps({"tenant": "t", "sandbox_id": "s", "category": "process",
                       "action": "exec", "actor": {field: 2**32 - 1}})  # fmt: skip
    assert parse_event_line(ok, now_ms=0)["actor"][field] == 2**32 - 1
