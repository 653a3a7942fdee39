"""The fleet simulator: valid events, per-sandbox sequences, a realistic mix."""

from __future__ import annotations

from collections import Counter

import orjson

from pipeline.schema.event import event_to_json, normalize_event
from pipeline.sim.simulate import FleetSimulator


def test_events_are_valid_schema_v1() -> None:
    for event in FleetSimulator(5, seed=1).events(500):
        as_json = orjson.loads(orjson.dumps(event_to_json(event)))
        assert normalize_event(as_json, now_ms=0) == event


def test_each_sandbox_has_a_gapless_sequence_starting_with_lifecycle() -> None:
    by_sandbox: dict[str, list[dict[str, object]]] = {}
    for event in FleetSimulator(7, seed=2).events(700):
        by_sandbox.setdefault(str(event["sandbox_id"]), []).append(event)
    assert len(by_sandbox) == 7
    for events in by_sandbox.values():
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert (events[0]["category"], events[0]["action"]) == ("lifecycle", "start")


def test_mix_covers_the_usual_activity() -> None:
    categories = Counter(e["category"] for e in FleetSimulator(10, seed=3).events(5000))
    assert set(categories) >= {
        "process",
        "file",
        "network",
        "api",
        "resource",
        "auth",
        "config",
        "data_transfer",
        "permission",
        "lifecycle",
    }
    assert categories["file"] > categories["auth"]


def test_same_seed_same_fleet() -> None:
    a = [(e["sandbox_id"], e["action"]) for e in FleetSimulator(3, seed=9).events(50)]
    b = [(e["sandbox_id"], e["action"]) for e in FleetSimulator(3, seed=9).events(50)]
    assert a == b


def test_scenarios_are_injected_into_the_chain_of_their_sandbox() -> None:
    from pipeline.sim.scenarios import SCENARIOS

    sim = FleetSimulator(8, seed=4)
    events = list(sim.events(4000, scenarios=list(SCENARIOS)))
    injected = [e for e in events if "sim.scenario" in e["attributes"]]
    assert {e["attributes"]["sim.scenario"] for e in injected} == set(SCENARIOS)
    for index, name in enumerate(SCENARIOS):
        sandboxes = {e["sandbox_id"] for e in injected if e["attributes"]["sim.scenario"] == name}
        assert sandboxes == {sim.sandbox_ids[index % 8]}
    by_sandbox: dict[str, list[int]] = {}
    for event in events:
        by_sandbox.setdefault(event["sandbox_id"], []).append(event["seq"])
    for seqs in by_sandbox.values():  # still one gapless sequence per sandbox
        assert seqs == list(range(1, len(seqs) + 1))
    for event in injected:  # valid schema-v1 events like the rest
        assert normalize_event(orjson.loads(orjson.dumps(event_to_json(event))), now_ms=0) == event
    brute = [e for e in injected if e["attributes"]["sim.scenario"] == "brute-force"]
    assert [e["outcome"] for e in brute].count("failure") == 8
    assert max(e["ts"] for e in brute) - min(e["ts"] for e in brute) <= 60_000
