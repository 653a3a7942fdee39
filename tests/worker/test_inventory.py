"""The worker's view of the sandbox inventory: a sandbox is named by tenant and id."""

from __future__ import annotations

from typing import Any

from pipeline.config import Settings
from pipeline.schema.codec import AvroCodec
from pipeline.schema.registry import SchemaRegistry
from pipeline.stages.base import BatchContext
from pipeline.stages.enrich import EnrichStage
from pipeline.worker.inventory import SANDBOX_SCHEMA, InventoryFollower, record_key

CODEC = AvroCodec(SchemaRegistry.load())


def record(tenant: str, sandbox_id: str, owner: str, environment: str) -> bytes:
    fields: dict[str, Any] = {
        "sandbox_id": sandbox_id,
        "tenant": tenant,
        "owner": owner,
        "environment": environment,
        "image": "img",
        "labels": {},
        "created_at": 0,
    }
    return CODEC.encode(SANDBOX_SCHEMA, fields)


def event(tenant: str, sandbox_id: str) -> dict[str, Any]:
    return {"tenant": tenant, "sandbox_id": sandbox_id, "level": "info", "outcome": "success",
            "category": "file", "actor": {"uid": 1}}  # fmt: skip


def test_two_tenants_with_the_same_sandbox_name_keep_their_own_records() -> None:
    follower = InventoryFollower(Settings(), CODEC)
    follower._apply(record_key("acme", "sb-1"), record("acme", "sb-1", "ana", "prod"))
    follower._apply(record_key("globex", "sb-1"), record("globex", "sb-1", "gus", "dev"))

    stage = EnrichStage(follower)
    out = stage.process(
        [event("acme", "sb-1"), event("globex", "sb-1"), event("evil", "sb-1")], BatchContext()
    )

    assert [(e["owner"], e["environment"], e["sandbox_known"]) for e in out] == [
        ("ana", "prod", True),
        ("gus", "dev", True),
        ("", "unknown", False),  # naming another tenant's sandbox gains nothing of it
    ]


def test_a_tombstone_deletes_its_sandbox_and_old_style_keys_still_work() -> None:
    follower = InventoryFollower(Settings(), CODEC)
    follower._apply(b"sb-2", record("acme", "sb-2", "ana", "prod"))  # key: the id alone
    assert follower.get("acme", "sb-2") is not None
    assert follower.get("globex", "sb-2") is None
    follower._apply(b"sb-2", None)
    assert follower.get("acme", "sb-2") is None

    follower._apply(record_key("acme", "sb-3"), record("acme", "sb-3", "ana", "prod"))
    follower._apply(record_key("acme", "sb-3"), None)
    assert follower.sandboxes == {}


def test_an_unreadable_record_is_counted_and_forgets_the_old_one() -> None:
    follower = InventoryFollower(Settings(), CODEC)
    follower._apply(record_key("acme", "sb-1"), record("acme", "sb-1", "ana", "prod"))
    follower._apply(record_key("acme", "sb-1"), b"garbage")
    assert follower.unreadable == 1
    assert follower.get("acme", "sb-1") is None
