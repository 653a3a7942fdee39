"""The batching ClickHouse sink (see sink.py)."""

from pipeline.sink.clickhouse.service import InsertService, SinkStopped
from pipeline.sink.clickhouse.sink import ClickHouseSink

__all__ = ["ClickHouseSink", "InsertService", "SinkStopped"]
