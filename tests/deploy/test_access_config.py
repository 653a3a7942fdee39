"""The shipped ClickHouse access configuration keeps tenants apart (no server needed).

Row policies fail closed on a server whose users are created by SQL
(``users_without_row_policies_can_read_rows`` false in config.xml). Users defined in
users.xml are different: there ClickHouse gives a user without a filter an all-rows
policy (checked on the embedded engine), so the file itself must give every user that
can read a tenant table an explicit filter for it. These tests fail when a migration adds
a table with a ``tenant`` column, or users.xml a user or a grant, without one.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline.commands.init import load_migrations

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse"
DATABASE = "audit"


def tenant_tables() -> set[str]:
    """Tables the migrations create with a ``tenant`` column."""
    tables = set()
    for migration in load_migrations():
        for name, body in re.findall(
            r"CREATE TABLE IF NOT EXISTS \$\{database\}\.(\w+)\s*\((.*?)\)\s*ENGINE",
            migration.sql,
            re.S,
        ):
            if re.search(r"^\s*tenant\s", body, re.M):
                tables.add(name)
    return tables


def readable(user: ET.Element) -> set[str]:
    """Tables of the database the user may SELECT ('*' for the whole database)."""
    out = set()
    for query in user.findall("grants/query"):
        match = re.match(rf"GRANT SELECT(?:\([^)]*\))? ON {DATABASE}\.(\w+|\*)", query.text or "")
        if match:
            out.add(match.group(1))
    return out


def filters(user: ET.Element) -> dict[str, str]:
    return {
        table.tag: table.findtext("filter") or ""
        for table in user.findall(f"databases/{DATABASE}/*")
    }


def test_the_migrations_have_tenant_tables_to_protect() -> None:
    assert {"events", "alerts", "chain_checkpoints", "chain_links", "events_per_minute"} <= (
        tenant_tables()
    )


def test_row_policies_fail_closed_on_the_server() -> None:
    config = ET.parse(DEPLOY / "config.xml").getroot()
    setting = config.findtext(
        "access_control_improvements/users_without_row_policies_can_read_rows"
    )
    assert setting == "false"


def test_every_user_that_can_read_a_tenant_table_has_a_filter_for_it() -> None:
    users = ET.parse(DEPLOY / "users.xml").getroot().find("users")
    assert users is not None
    protected = tenant_tables()
    for user in users:
        own = filters(user)
        grants = readable(user)
        if user.findtext("access_management") == "1":
            grants = protected  # the administrator can read everything
        for table in protected & (grants | (protected if "*" in grants else set())):
            assert table in own, f"users.xml: {user.tag} can read {table} without a filter"


def test_analysts_see_one_tenant_in_every_tenant_table() -> None:
    users = ET.parse(DEPLOY / "users.xml").getroot().find("users")
    assert users is not None
    analysts = [u for u in users if u.tag.startswith("analyst_")]
    assert len(analysts) >= 2
    for analyst in analysts:
        tenant = analyst.tag.removeprefix("analyst_")
        own = filters(analyst)
        assert set(own) == tenant_tables(), analyst.tag
        assert set(own.values()) == {f"tenant = '{tenant}'"}, analyst.tag
        assert analyst.findtext("profile") == "analyst"


def test_every_materialized_view_runs_as_its_definer() -> None:
    """A view without ``SQL SECURITY DEFINER`` runs as the inserting user: the sink's
    `ingest`, which may not read events back, then has every insert refused while the
    view is pushed to, and retries for ever (migration 0017)."""
    made: set[str] = set()
    definer: set[str] = set()
    statements = [s for m in load_migrations() for s in m.sql.split(";")]
    for statement in statements:  # in the order init runs them
        dropped = re.search(r"DROP VIEW IF EXISTS \$\{database\}\.(\w+)", statement)
        created = re.search(
            r"CREATE MATERIALIZED VIEW IF NOT EXISTS \$\{database\}\.(\w+)(.*?) AS ",
            statement,
            re.S,
        )
        altered = re.search(
            r"ALTER TABLE \$\{database\}\.(\w+) MODIFY SQL SECURITY DEFINER", statement
        )
        if dropped:
            made.discard(dropped[1])
            definer.discard(dropped[1])
        if created:
            made.add(created[1])
            if "SQL SECURITY DEFINER" in created[2]:
                definer.add(created[1])
        if altered:
            definer.add(altered[1])
    assert made, "no materialized view found: the pattern is stale"
    assert made - definer == set()
