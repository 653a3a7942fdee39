"""One hunt: each rule compiled to SQL (``pipeline/rules/sql.py``) and run over a range of
stored events; each hit an alert marked as a hunt result.

A hunt result is an ``Alert`` with the tag ``auditpipe.hunt`` and an id of its own kind
(``alerts.alert_id(..., "hunt")``): stored beside the stream's alerts it is told apart, and
running the same hunt again gives the same ids, so ``store`` writes none of them twice.

Invariants: the range and the tenant are bound parameters; a rule ClickHouse cannot run
as the engine does (``sql.Unsupported``, or an RE2 regex error) is reported by its id
and the other rules still run; events scanned are ClickHouse's own count of rows read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.rules.alerts import ALERT_COLUMNS, Alert, alert_columns, make_alert
from pipeline.rules.model import Rule
from pipeline.rules.sql import Unsupported, hunt_sql
from pipeline.schema.sql import where_range

HUNT_TAG = "auditpipe.hunt"
SETTINGS = {"short_circuit_function_evaluation": "force_enable"}
"""``if(is an address, isIPAddressInRange(..), 0)``: never parse what is not an address."""


@dataclass
class RuleRun:
    rule: Rule
    alerts: list[Alert] = field(default_factory=list)
    scanned: int = 0
    """Rows ClickHouse read for this rule."""
    seconds: float = 0.0
    error: str | None = None


def run_rule(client: Client, database: str, rule: Rule, params: dict[str, Any]) -> RuleRun:
    done = RuleRun(rule)
    try:
        sql = hunt_sql(rule, f"{database}.events", where_range("ts", params.get("tenant")))
        result = client.query(sql, parameters=params, settings=SETTINGS)
    except Unsupported as exc:
        done.error = str(exc)
        return done
    except DatabaseError as exc:
        if "re2" not in str(exc).lower() and "regexp" not in str(exc).lower():
            raise  # not the rule's doing: the service's (the command's exit status 3)
        first = str(exc).strip().splitlines()[0]
        done.error = f"{rule.id}: RE2 (ClickHouse) cannot compile its regex: {first[:300]}"
        return done
    summary = result.summary or {}
    done.scanned = int(summary.get("read_rows", 0) or 0)
    done.seconds = int(summary.get("elapsed_ns", 0) or 0) / 1e9
    tags = (*rule.tags, HUNT_TAG)
    for tenant, sandbox, first, last, count, evidence, _value in result.result_rows:
        done.alerts.append(
            make_alert(
                rule.id,
                rule.title,
                rule.severity,
                tags,
                str(tenant),
                str(sandbox),
                int(first),
                int(last),
                int(count),
                [str(e) for e in evidence],
                kind="hunt",
            )
        )
    return done


def hunt(
    client: Client, database: str, rules: list[Rule], params: dict[str, Any]
) -> Iterator[RuleRun]:
    for rule in rules:
        yield run_rule(client, database, rule, params)


def store(client: Client, database: str, alerts: list[Alert]) -> int:
    """Insert the hunt results not stored yet (by id); how many were new."""
    if not alerts:
        return 0
    ids = [a.alert_id for a in alerts]
    known = {
        str(row[0])
        for row in client.query(
            f"SELECT alert_id FROM {database}.alerts WHERE alert_id IN {{ids:Array(UUID)}}",
            parameters={"ids": ids},
        ).result_rows
    }
    fresh = [a for a in alerts if a.alert_id not in known]
    if fresh:
        client.insert(
            f"{database}.alerts",
            alert_columns(fresh),
            column_names=list(ALERT_COLUMNS),
            column_oriented=True,
        )
    return len(fresh)
