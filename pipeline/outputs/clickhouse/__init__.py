"""The batching ClickHouse sink (see sink.py)."""

from pipeline.outputs.clickhouse.service import InsertService, SinkStopped
from pipeline.outputs.clickhouse.sink import ClickHouseSink

__all__ = ["ClickHouseSink", "InsertService", "SinkStopped"]
