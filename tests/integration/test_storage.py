"""The column ranges the validate stage checks (pipeline/schema/storage.py) are those of
the real events table: a migration that changes a column's type fails here until the
table of ranges changes too."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.schema.storage import COLUMN_TYPES, INTEGER_COLUMNS, UINT32, UINT64
from tests.integration.helpers import provision

pytestmark = pytest.mark.integration


def test_the_ranges_checked_are_the_events_table_column_types(
    isolated_settings: Settings,
) -> None:
    client = provision(isolated_settings)
    types = dict(
        client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = 'events'",
            parameters={"db": isolated_settings.clickhouse.database},
        ).result_rows
    )
    for field, expected in COLUMN_TYPES.items():
        assert types[field.replace(".", "_")] == expected, field
    for field, (low, high) in INTEGER_COLUMNS.items():
        kind = COLUMN_TYPES[field].removeprefix("Nullable(").removesuffix(")")
        assert (low, high) == {"UInt32": UINT32, "UInt64": UINT64}[kind], field
