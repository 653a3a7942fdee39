"""Whether ClickHouse can take the worker's writes, asked once before the worker starts:
the server answers, and the database has the tables the worker writes (else the inserts
would be retried forever; the cause is that ``auditpipe init`` did not run)."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

WRITTEN = (
    "events",
    "deadletter",
    "alerts",
    "events_policy_rollup",
    "chain_links",
    "chain_checkpoints",
    "events_sink_progress",
)
"""The tables the worker inserts into."""


class NotReady(Exception):
    """The destination answers but cannot take the pipeline's writes (one line)."""


def healthcheck(client: Client, database: str, url: str) -> None:
    """Raises OperationalError when the server does not answer, NotReady when the
    database lacks a table the worker writes."""
    names = client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
    ).result_rows
    missing = sorted(set(WRITTEN) - {str(row[0]) for row in names})
    if len(missing) == len(WRITTEN):
        raise NotReady(
            f"ClickHouse at {url}: database {database} has none of the pipeline's tables "
            "(run `auditpipe init`)"
        )
    if missing:
        raise NotReady(
            f"ClickHouse at {url}: database {database} has no table {', '.join(missing)} "
            "(run `auditpipe init`: a migration is missing)"
        )
