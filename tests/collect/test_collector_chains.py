"""The collector's chains are per tenant and sandbox (no broker needed: sealing only)."""

from __future__ import annotations

from pathlib import Path

from pipeline.chain.hashing import GENESIS, chain_key, link
from pipeline.collect.collector import Collector
from pipeline.config import Settings
from pipeline.schema.event import normalize_event


def test_two_tenants_with_the_same_sandbox_name_are_two_chains(tmp_path: Path) -> None:
    collector = Collector(Settings(), spool_dir=tmp_path / "spool")
    events = [
        normalize_event(
            {
                "tenant": tenant,
                "sandbox_id": "sb-1",
                "category": "process",
                "action": "exec",
                "event_id": f"{tenant}-{n}",
            },
            now_ms=1_795_860_000_000,
        )
        for n in range(3)
        for tenant in ("acme", "globex")
    ]
    for event in events:
        collector._buffer(event)

    for tenant in ("acme", "globex"):
        chain = [e for e in events if e["tenant"] == tenant]
        assert [e["seq"] for e in chain] == [1, 2, 3]
        previous = GENESIS
        for event in chain:  # each links to its own tenant's previous event only
            assert event["prev_hash"] == previous
            assert event["hash"] == link(previous, event)
            previous = event["hash"]
        assert collector._heads[chain_key(tenant, "sb-1")].hash == previous
    spooled = collector._encode(collector._buffers)
    assert sorted((m.chain, m.first_seq, m.last_seq) for m in spooled) == [
        (chain_key("acme", "sb-1"), 1, 3),
        (chain_key("globex", "sb-1"), 1, 3),
    ]


def test_the_collector_masks_secrets_before_it_seals(tmp_path: Path) -> None:
    collector = Collector(Settings(), spool_dir=tmp_path / "spool")
    event = normalize_event(
        {"tenant": "acme", "sandbox_id": "sb-1", "category": "process", "action": "exec",
         "actor": {"cmdline": "curl -u admin https://ops:Tr0ub4dor@vault.internal/v1"}},
        now_ms=1_795_860_000_000,
    )  # fmt: skip
    collector._buffer(event)
    assert "Tr0ub4dor" not in event["actor"]["cmdline"]
    assert event["attributes"]["auditpipe.redacted"] == "url_password@actor.cmdline"
    assert event["hash"] == link(GENESIS, event)  # the hash covers the masked event
