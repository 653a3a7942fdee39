"""The fairness stage: rate limits per sandbox and tenant that defer, never drop, keep
each sandbox's order, raise one flooding alert, and cannot be gamed by timestamps."""

from __future__ import annotations

from typing import Any

from pipeline.config import FairnessConfig
from pipeline.stages.base import BatchContext
from pipeline.stages.fairness import FLOOD_RULE, FairnessStage, FairShare, TokenBuckets

NOW_MS = 1_800_000_000_000


def clock() -> float:
    return NOW_MS / 1000


def chunk(
    ctx: BatchContext, messages: list[tuple[str, str, int, int]], start_offset: int = 0
) -> list[dict[str, Any]]:
    """Events of messages (tenant, sandbox, events, Kafka timestamp), one per offset of
    partition 0; their keys and timestamps recorded on ``ctx`` as decode does."""
    events = []
    for n, (tenant, sandbox, count, sent_ms) in enumerate(messages):
        offset = start_offset + n
        ctx.arrivals[(0, offset)] = (f"{tenant}/{sandbox}".encode(), sent_ms)
        events.extend(
            {
                "tenant": tenant,
                "sandbox_id": sandbox,
                "event_id": f"{sandbox}-{offset}-{i}",
                "kafka_partition": 0,
                "kafka_offset": offset,
            }
            for i in range(count)
        )
    return events


def stage(**limits: Any) -> FairnessStage:
    return FairnessStage(FairShare(FairnessConfig(**limits), clock=clock))


def test_a_sandbox_over_its_limit_is_deferred_whole_messages_and_others_go_on() -> None:
    fair = stage(sandbox_events_per_s=100, sandbox_burst=300)
    ctx = BatchContext()
    flood, quiet = ("t", "flood", 200, NOW_MS), ("t", "quiet", 5, NOW_MS)
    events = chunk(ctx, [flood, quiet, flood, quiet])

    kept = fair.process(events, ctx)

    assert ctx.deferred == [(0, 2)]  # the second flood message: 400 > 300
    assert [e["kafka_offset"] for e in kept] == [0] * 200 + [1] * 5 + [3] * 5
    assert ctx.counted("events_deferred", reason="sandbox_rate") == 200
    assert len(kept) + ctx.counted("events_deferred") == len(events)  # none lost


def test_after_a_deferral_the_sandbox_waits_behind_it_until_the_deferred_path_took_it() -> None:
    """Order: a later message of the sandbox never overtakes its deferred ones, even when
    its bucket has refilled; after the deferred path took them, it is admitted again."""
    fair = stage(sandbox_events_per_s=100, sandbox_burst=100)
    ctx = BatchContext()
    fair.process(chunk(ctx, [("t", "sb", 100, NOW_MS - 60_000)]), ctx)
    fair.process(chunk(ctx, [("t", "sb", 50, NOW_MS - 59_900)], 1), ctx)  # over: deferred
    later = chunk(ctx, [("t", "sb", 1, NOW_MS - 30_000), ("t", "sb", 1, NOW_MS)], 2)

    assert fair.process(later, ctx) == []
    assert ctx.deferred == [(0, 1), (0, 2), (0, 3)]
    assert ctx.counted("events_deferred", reason="behind_deferred") == 2

    fair.share.drained([b"t/sb"] * 3)
    assert fair.process(chunk(ctx, [("t", "sb", 1, NOW_MS)], 4), ctx) != []


def test_a_tenant_limit_binds_its_sandboxes_together_and_spares_other_tenants() -> None:
    fair = stage(sandbox_burst=1_000, tenant_events_per_s=10, tenant_burst=1_000)
    assert stage().share.tenants is None  # no tenant limit unless set
    ctx = BatchContext()
    many = [("greedy", f"sb{n}", 400, NOW_MS) for n in range(4)]
    kept = fair.process(chunk(ctx, [*many, ("other", "sb0", 400, NOW_MS)]), ctx)

    assert ctx.deferred == [(0, 2), (0, 3)]
    assert ctx.counted("events_deferred", reason="tenant_rate") == 800
    assert sum(1 for e in kept if e["tenant"] == "other") == 400


def test_rates_are_measured_at_send_time_so_a_backlog_read_fast_is_not_a_flood() -> None:
    """Ten minutes of a steady 50 events/s, read in one go after an outage: admitted."""
    fair = stage(sandbox_events_per_s=60, sandbox_burst=100)
    ctx = BatchContext()
    backlog = [("t", "sb", 50, NOW_MS - 600_000 + s * 1000) for s in range(600)]

    kept = fair.process(chunk(ctx, backlog), ctx)

    assert ctx.deferred == []
    assert len(kept) == 600 * 50


def test_forged_timestamps_earn_no_tokens() -> None:
    """Far-future stamps count as the worker's now; stamps that go back refill nothing."""
    fair = stage(sandbox_events_per_s=10, sandbox_burst=100)
    ctx = BatchContext()
    future = [("t", "sb", 100, NOW_MS + 86_400_000 * k) for k in (0, 1, 2)]
    assert len(fair.process(chunk(ctx, future), ctx)) == 100

    fair = stage(sandbox_events_per_s=10, sandbox_burst=100)
    ctx = BatchContext()
    past = [("t", "sb", 100, NOW_MS), ("t", "sb", 100, NOW_MS - 3_600_000)]
    assert len(fair.process(chunk(ctx, past), ctx)) == 100
    assert ctx.deferred == [(0, 1)]


def test_a_flood_raises_one_alert_per_interval_with_an_id_a_replay_repeats() -> None:
    fair = stage(sandbox_events_per_s=10, sandbox_burst=10, alert_interval_s=300)
    ctx = BatchContext()
    floods = [("t", "sb", 20, NOW_MS - 900_000 + s * 1000) for s in range(10)]
    fair.process(chunk(ctx, floods), ctx)
    fair.share.drained([b"t/sb"] * 10)
    fair.process(chunk(ctx, [("t", "sb", 20, NOW_MS)], 10), ctx)  # 891 s later: again

    assert [a.rule_id for a in ctx.alerts] == [FLOOD_RULE, FLOOD_RULE]
    first = ctx.alerts[0]
    assert (first.tenant, first.sandbox_id, first.count) == ("t", "sb", 20)
    assert "attack.defense_evasion" in first.tags

    replay = stage(sandbox_events_per_s=10, sandbox_burst=10, alert_interval_s=300)
    again = BatchContext()
    replay.process(chunk(again, floods), again)
    assert again.alerts[0].alert_id == first.alert_id


def test_idle_full_buckets_are_forgotten_so_many_sandboxes_cost_no_memory() -> None:
    fair = stage(sandbox_events_per_s=1_000, sandbox_burst=1_000)
    ctx = BatchContext()
    fair.process(chunk(ctx, [("t", f"sb{n}", 1, NOW_MS - 120_000) for n in range(5_000)]), ctx)
    assert len(fair.share.sandboxes.buckets) == 5_000
    fair.process(chunk(ctx, [("t", "late", 1, NOW_MS)], 5_000), ctx)
    assert len(fair.share.sandboxes.buckets) == 1


def test_token_buckets_refill_at_their_rate_up_to_the_burst() -> None:
    buckets = TokenBuckets(rate_per_s=2, burst=4)
    assert buckets.take("k", 4, 0)
    assert not buckets.take("k", 1, 400)  # 0.8 tokens
    assert buckets.take("k", 1, 500)
    assert buckets.available("k", 60_000) == 4
    assert buckets.available("k", 0) == 4  # time never goes back
