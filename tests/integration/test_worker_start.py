"""A worker whose database was never initialised says so in one line and exits 3,
instead of retrying its inserts forever."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from tests.integration.helpers import provision, run_cli

pytestmark = pytest.mark.integration


def test_a_worker_without_its_tables_exits_3_naming_the_fix(isolated_settings: Settings) -> None:
    result = run_cli(isolated_settings, "worker", timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [m for m in result.stderr.splitlines() if m.startswith("auditpipe:")]
    database = isolated_settings.clickhouse.database
    assert f"database {database} has none of the pipeline's tables (run `auditpipe init`)" in line

    # One table dropped (a migration lost): named.
    client = provision(isolated_settings)
    client.command(f"DROP TABLE {database}.chain_links")
    again = run_cli(isolated_settings, "worker", timeout=120)
    assert again.returncode == 3
    assert f"database {database} has no table chain_links (run `auditpipe init`" in again.stderr
