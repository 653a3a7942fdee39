"""The sharding of a cluster's tables (the two-shard runs are in
tests/integration/test_shards.py)."""

from __future__ import annotations

import pytest

from pipeline.config import ClickHouseConfig, ConfigError, Settings
from pipeline.outputs.clickhouse.distributed import (
    local_database,
    shard_configs,
    sharding_key,
)


def test_events_and_their_progress_are_sharded_by_kafka_partition() -> None:
    """The exactly-once skip trusts a partition's stored offset: the rows and the offset
    of one partition must be written by one shard."""
    columns = {"tenant", "sandbox_id", "kafka_partition", "kafka_offset"}
    assert sharding_key("events", columns) == "kafka_partition"
    assert sharding_key("events_sink_progress", {"kafka_partition"}) == "kafka_partition"
    assert sharding_key("alerts", {"tenant", "sandbox_id"}) == "cityHash64(tenant, sandbox_id)"
    assert sharding_key("deadletter", {"reason"}) == "rand()"


def test_each_shard_is_reached_as_configured_but_for_its_url() -> None:
    config = ClickHouseConfig(
        url="https://ch-1:8443",
        user="ingest",
        cluster="audit",
        shards=["https://ch-1:8443", "https://ch-2:8443"],
        ca_file="/etc/ca.pem",
    )
    shards = list(shard_configs(config))
    assert [s.url for s in shards] == config.shards
    assert all(s.user == "ingest" and str(s.ca_file) == "/etc/ca.pem" for s in shards)
    assert all(not s.cluster and not s.shards for s in shards)
    assert local_database("audit") == "audit_local"


@pytest.mark.parametrize("section", [{"cluster": "audit"}, {"shards": ["http://ch-2:8123"]}])
def test_a_cluster_needs_its_name_and_its_shards(section: dict[str, object]) -> None:
    with pytest.raises((ConfigError, ValueError), match=r"cluster and clickhouse\.shards"):
        Settings(clickhouse=section)
