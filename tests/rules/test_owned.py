"""``object_owned``: an upload to a destination the sandbox's inventory lists as its own
(``labels.owned_destinations``) is not exfiltration; a look-alike is, and so is a
destination the event itself claims (the engine's side; the SQL's is in
tests/hunt/test_run.py, over the same cases)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.rules.compiler import object_owned


def upload(obj: str, owned: str | None, **extra: Any) -> dict[str, Any]:
    labels = {} if owned is None else {"owned_destinations": owned}
    return {"category": "data_transfer", "object": obj, "labels": labels, **extra}


@pytest.mark.parametrize(
    ("owned", "obj"),
    [
        ("acme-builds", "s3://acme-builds/cache.tar"),
        ("other, ACME-Builds ", "s3://acme-builds/cache.tar"),
        (".acme.example", "https://eu.artifacts.acme.example:8443/upload"),
        ("artifacts.acme.example", "artifacts.acme.example:443"),
        ("10.0.0.5", "http://user@10.0.0.5/put"),
    ],
)
def test_a_listed_destination_is_owned(owned: str, obj: str) -> None:
    assert object_owned(upload(obj, owned))


@pytest.mark.parametrize(
    ("owned", "obj"),
    [
        ("acme-builds", "s3://acme-builds-x/dump"),
        ("acme-builds", "s3://x-acme-builds/dump"),
        (".acme.example", "https://acme.example.evil.test/x"),
        (".acme.example", "https://evilacme.example/x"),
        ("acme.example", "https://eu.acme.example/x"),  # no leading dot: that host only
        (",, ,", "s3://anything/x"),
        ("", ""),
        (None, "s3://acme-builds/x"),
    ],
)
def test_a_look_alike_or_an_empty_entry_is_not(owned: str | None, obj: str) -> None:
    assert not object_owned(upload(obj, owned))


def test_the_event_cannot_declare_a_destination_its_own() -> None:
    """Only the inventory's labels count: an attribute of the same name, which the
    sandbox writes, does nothing."""
    event = upload("s3://drop/x", None, attributes={"owned_destinations": "drop"})
    assert not object_owned(event)


def test_the_pack_lets_owned_uploads_pass_and_alerts_on_others() -> None:
    from pipeline.rules.engine import DetectionEngine
    from pipeline.rules.language import load_rules

    engine = DetectionEngine(load_rules([]), suppress_ms=0)
    base = {
        "tenant": "acme",
        "sandbox_id": "sb-1",
        "level": "info",
        "outcome": "success",
        "action": "upload",
        "bytes": 2_000_000_000,
        "actor": {"user": "ci"},
        "attributes": {},
        "ts": 1_795_000_000_000,
    }
    own = upload("s3://acme-builds/release.tar", "acme-builds", **base, event_id="a", seq=1)
    other = upload("s3://acme-builds-x/r.tar", "acme-builds", **base, event_id="b", seq=2)
    fired = {a.rule_id for a in engine.process([own])}
    assert "AP-EXF-002" not in fired
    fired = {a.rule_id for a in engine.process([other])}
    assert "AP-EXF-002" in fired
