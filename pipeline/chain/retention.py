r"""``auditpipe retention show|apply``: how long each class of rows is kept (ClickHouse TTL).

Classes of ``audit.events``:

* **security**: a level of notice or above, a denied outcome, or a permission, auth or
  config event (the events whose normalised severity is medium or above, and every auth
  event);
* **debug**: level debug, and not security;
* **info**: everything else.

``apply`` sets the tables' TTLs from the ``retention`` section of the configuration;
ClickHouse deletes expired rows as it merges parts (``OPTIMIZE TABLE ... FINAL`` forces
it). ``show`` prints the configured periods and the TTL each table has now.

>>> import re
>>> config = RetentionConfig(debug_days=3, info_days=30, security_days=365)
>>> re.findall(r"toIntervalSecond\((\d+)\) DELETE", events_ttl(config))
['259200', '2592000', '31536000']
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from pipeline.config import RetentionConfig

SECURITY = (
    "level IN ('notice', 'warning', 'error', 'critical') OR outcome = 'denied' "
    "OR category IN ('permission', 'auth', 'config')"
)
"""The security class, from fields the hash chain covers only (not the stored
``severity``, which the worker derives from them and no chain covers): a row cannot be
moved to a shorter-lived class without its content no longer matching its hash, and the
sealer (``pipeline/chain/seals.py``) computes each row's expiry from the same expression."""
DAY_S = 86_400


def _after(column: str, days: float) -> str:
    return f"{column} + toIntervalSecond({ttl_seconds(days)})"


def ttl_seconds(days: float) -> int:
    return round(days * DAY_S)


def expiry_sql(config: RetentionConfig) -> str:
    """When an ``events`` row expires (a DateTime): exactly what its TTL computes."""
    return (
        f"toDateTime(ts) + toIntervalSecond(if({SECURITY}, {ttl_seconds(config.security_days)}, "
        f"if(level = 'debug', {ttl_seconds(config.debug_days)}, "
        f"{ttl_seconds(config.info_days)})))"
    )


def events_ttl(config: RetentionConfig) -> str:
    return ", ".join(
        [
            f"{_after('toDateTime(ts)', config.debug_days)} DELETE WHERE (level = 'debug') "
            f"AND NOT ({SECURITY})",
            f"{_after('toDateTime(ts)', config.info_days)} DELETE WHERE (level != 'debug') "
            f"AND NOT ({SECURITY})",
            f"{_after('toDateTime(ts)', config.security_days)} DELETE",
        ]
    )


def table_ttls(config: RetentionConfig) -> dict[str, str]:
    """Table name -> its TTL clause."""
    return {
        "events": events_ttl(config),
        "deadletter": f"{_after('toDateTime(failed_at)', config.deadletter_days)} DELETE",
        # By when raised: an alert about a year-old event (a backfilled log) is kept as
        # long as any other, not dropped at insert as already expired.
        "alerts": f"{_after('toDateTime(created_at)', config.alerts_days)} DELETE",
        "events_policy_rollup": f"{_after('minute', config.rollup_days)} DELETE",
        "events_per_minute": f"{_after('minute', config.rollup_days)} DELETE",
        "resource_per_minute": f"{_after('minute', config.rollup_days)} DELETE",
        # As long as the events whose chain they link are kept (the longest class).
        "chain_links": f"{_after('toDateTime(ts)', config.security_days)} DELETE",
    }


def apply(client: Client, database: str, config: RetentionConfig) -> list[str]:
    """Set every table's TTL; returns the tables changed."""
    changed = []
    for table, ttl in table_ttls(config).items():
        client.command(f"ALTER TABLE {database}.{table} MODIFY TTL {ttl}")
        changed.append(table)
    return changed


def current(client: Client, database: str) -> dict[str, str]:
    """Table name -> the TTL clause it has now ('' when none)."""
    rows = client.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
        parameters={"db": database},
    ).result_rows
    out = {}
    for name, create in rows:
        if name in table_ttls(RetentionConfig()):
            ttl = create.split(" TTL ", 1)[1].split(" SETTINGS ", 1)[0] if " TTL " in create else ""
            out[str(name)] = ttl
    return out
