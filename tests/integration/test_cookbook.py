"""Every query of docs/queries.md runs on seeded data and finds what it looks for."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from pipeline.collect.publisher import EventPublisher
from pipeline.config import Settings
from pipeline.schema import codec_for
from pipeline.sim.scenarios import SCENARIOS
from pipeline.sim.simulate import FleetSimulator
from tests.integration.helpers import (
    WorkerProcess,
    provision,
    run_cli,
    scalar,
    wait_for_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "queries.md"


def queries() -> list[tuple[str, str]]:
    text = COOKBOOK.read_text()
    found = re.findall(r"^## (.+?)\n.*?```sql\n(.*?)```", text, flags=re.S | re.M)
    assert len(found) >= 10, "the cookbook has at least 10 queries"
    return found


async def publish(settings: Settings, events: list[dict[str, object]]) -> None:
    async with EventPublisher(settings, codec_for(settings.kafka.schema_registry_url)) as publisher:
        await publisher.add_many(events)


def test_every_cookbook_query_runs_and_finds_rows(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    policy = tmp_path / "policy.yaml"
    policy.write_text("default: info\n")  # debug events go to the rollup
    settings.policy.file = policy
    client = provision(settings)
    db = settings.clickhouse.database
    sim = FleetSimulator(10, tenants=2, seed=31)
    events = list(sim.events(6000, scenarios=list(SCENARIOS)))
    events[20]["tenant"] = ""  # one dead letter, and so a seq gap in acme's first sandbox
    run_cli(
        settings,
        "inventory",
        "put",
        "--sandbox-id",
        sim.sandbox_ids[0],
        "--tenant",
        "acme",
        "--owner",
        "ana",
        "--environment",
        "prod-replica",
    )
    asyncio.run(publish(settings, events))
    with WorkerProcess(settings):
        wait_until(
            lambda: scalar(client, f"SELECT count() FROM {db}.deadletter") >= 1,
            120,
            "no dead letter stored",
        )
        kept = sum(1 for e in events if e["level"] != "debug" and e["tenant"])
        wait_for_rows(client, f"{db}.events", kept)

    parameters = {"tenant": "acme", "sandbox": sim.sandbox_ids[0], "minutes": 0}
    empty = []
    for title, sql in queries():
        local = sql.replace("audit.", f"{db}.")
        used = {name: parameters[name] for name in re.findall(r"\{(\w+):", local)}
        rows = client.query(local, parameters=used).result_rows
        if not rows:
            empty.append(title)
    assert not empty, f"queries that found nothing on the seeded data: {empty}"
