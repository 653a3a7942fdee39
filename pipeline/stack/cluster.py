"""Local clusters for the tests of scale-out, on loopback ports.

``KafkaCluster``: three KRaft nodes (each broker and controller), replication factor 3 and
``min.insync.replicas`` 2, for a broker dying mid-stream and workers sharing partitions
(``kill`` and ``start`` one node). Each node is a ``KafkaBroker`` under
``root/node-<id>``, sharing the broker jars.

``ClickHouseShards``: ClickHouse servers that each hold one shard of a cluster named
``auditpipe`` (``remote_servers`` in each one's config; no replicas: the embedded engine
runs no Keeper, deploy/clickhouse/cluster/README.md).
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.config import Settings
from pipeline.stack.clickhouse import ClickHouseServer
from pipeline.stack.kafka import ClusterNode, KafkaBroker, new_cluster_id
from pipeline.stack.process import free_ports


class KafkaCluster:
    def __init__(self, root: Path, libs: Path, nodes: int = 3, heap: str = "512m") -> None:
        ports = free_ports(2 * nodes)
        voters = ",".join(f"{n + 1}@127.0.0.1:{ports[2 * n + 1]}" for n in range(nodes))
        cluster_id = new_cluster_id()
        self.brokers = []
        for n in range(nodes):
            home = root / f"node-{n + 1}"
            if libs.exists() and not (home / "kafka" / "libs").exists():
                (home / "kafka").mkdir(parents=True, exist_ok=True)
                (home / "kafka" / "libs").symlink_to(libs)
            settings = Settings(
                home=home,
                stack={
                    "kafka_port": ports[2 * n],
                    "kafka_controller_port": ports[2 * n + 1],
                    "kafka_heap": heap,
                },
            )
            node = ClusterNode(n + 1, voters, cluster_id, replicas=min(3, nodes), min_insync=2)
            self.brokers.append(KafkaBroker(settings, node=node))

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.endpoint for broker in self.brokers)

    def up(self) -> None:
        """Start every node, then wait until each answers (a controller quorum needs a
        majority up before any node finishes starting)."""
        for broker in self.brokers:
            broker.start()
        for broker in self.brokers:
            broker.wait_ready()

    def kill(self, index: int) -> None:
        """kill -9 one node."""
        self.brokers[index].process.kill()

    def start(self, index: int) -> None:
        self.brokers[index].start()
        self.brokers[index].wait_ready()

    def down(self, timeout_s: float = 10.0) -> None:
        """Stop every node at once. One after the other, the last nodes lose their
        controller quorum and wait out the whole timeout before the SIGKILL (36 s of a
        test run); together, they stop in seconds, or are killed after ``timeout_s``."""
        with ThreadPoolExecutor(len(self.brokers)) as pool:
            list(pool.map(lambda broker: broker.process.stop(timeout_s), self.brokers))


class ClickHouseShards:
    NAME = "auditpipe"

    def __init__(self, root: Path, shards: int = 2) -> None:
        ports = free_ports(2 * shards)
        replicas = "".join(
            f"<shard><replica><host>127.0.0.1</host><port>{ports[2 * n + 1]}</port>"
            "</replica></shard>"
            for n in range(shards)
        )
        # The secret: each shard runs a query as the user who sent it to the front (and
        # applies that user's row filters), not as the front's own login.
        secret = f"<secret>{secrets.token_hex(16)}</secret>"
        remote = f"<remote_servers><{self.NAME}>{secret}{replicas}</{self.NAME}></remote_servers>"
        self.servers = [
            ClickHouseServer(
                Settings(
                    home=root / f"shard-{n + 1}",
                    stack={
                        "clickhouse_http_port": ports[2 * n],
                        "clickhouse_tcp_port": ports[2 * n + 1],
                    },
                ),
                shard_of=remote,
            )
            for n in range(shards)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.endpoint for server in self.servers]

    def up(self) -> None:
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.wait_ready()

    def down(self) -> None:
        for server in self.servers:
            server.process.stop(10.0)
