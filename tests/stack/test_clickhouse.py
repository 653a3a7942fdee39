"""The users of a shard server (``users_for_shards``); run on two shards in
tests/integration/test_shards.py."""

from __future__ import annotations

import re

from pipeline.resources import resource_path
from pipeline.stack.clickhouse import users_for_shards

SHIPPED = resource_path("deploy", "clickhouse", "users.xml").read_text()


def section(text: str, user: str) -> str:
    users = text[text.index("<users>") :]
    return users[users.index(f"<{user}>") : users.index(f"</{user}>")]


def test_tenant_filters_move_to_the_shards_tables_and_all_rows_filters_stay_on_both() -> None:
    shards = users_for_shards(SHIPPED)
    acme = section(shards, "analyst_acme")
    assert "<audit>" not in acme  # refused by ClickHouse on a Distributed table
    assert "<audit_local>" in acme and "tenant = 'acme'" in acme
    for user in ("default", "ingest"):
        both = section(shards, user)
        assert "<audit>" in both and "<audit_local>" in both, user
        audit = both.split("<audit>")[1].split("</audit>")[0]
        assert not re.search(r"<filter>(?!1</filter>)", audit), user


def test_every_grant_on_the_distributed_tables_is_also_on_the_shards_tables() -> None:
    shards = users_for_shards(SHIPPED)
    grants = re.findall(r"GRANT (.+?) ON audit\.(\w+)<", shards)
    assert grants
    for what, table in grants:
        assert f"GRANT {what} ON audit_local.{table}<" in shards, (what, table)
    assert "GRANT SELECT ON system.processes" in section(shards, "ingest")
