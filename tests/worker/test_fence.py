"""The fence stops a batch whose group membership changed while it ran (worker/fence.py)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.worker import fence as fence_module
from pipeline.worker.fence import Fence, FenceUnsure


class _Coordinator:
    """Stands for aiokafka's group coordinator: a heartbeat may reset the member id."""

    def __init__(
        self, member: str, after_heartbeat: str, answer: bool = True, delay_s: float = 0.0
    ) -> None:
        self.member_id = member
        self.after_heartbeat = after_heartbeat
        self.answer = answer
        self.delay_s = delay_s
        self.heartbeats = 0

    async def _do_heartbeat(self) -> bool:
        self.heartbeats += 1
        await asyncio.sleep(self.delay_s)
        self.member_id = self.after_heartbeat
        return self.answer  # False: the request failed (coordinator dead, moving)


def _app(coordinator: _Coordinator, loop: asyncio.AbstractEventLoop) -> Any:
    consumer = SimpleNamespace(_coordinator=coordinator)
    thread = SimpleNamespace(_ensure_consumer=lambda: consumer, thread_loop=loop)
    return SimpleNamespace(consumer=SimpleNamespace(_thread=thread), loop=loop)


@pytest.fixture
def consumer_loop() -> Any:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _exits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    exits: list[str] = []
    monkeypatch.setattr(fence_module, "exit_stalled", lambda why, loop=None: exits.append(why))
    return exits


def test_a_member_that_lost_the_group_does_not_insert(
    monkeypatch: pytest.MonkeyPatch, consumer_loop: asyncio.AbstractEventLoop
) -> None:
    exits = _exits(monkeypatch)
    coordinator = _Coordinator("member-1", after_heartbeat="")  # "unknown member" resets it
    fence = Fence(_app(coordinator, consumer_loop))
    fence.begin()
    fence.check()
    assert coordinator.heartbeats == 1
    assert len(exits) == 1 and "member-1" in exits[0]


def test_a_member_that_rejoined_under_another_id_does_not_insert(
    monkeypatch: pytest.MonkeyPatch, consumer_loop: asyncio.AbstractEventLoop
) -> None:
    exits = _exits(monkeypatch)
    fence = Fence(_app(_Coordinator("member-1", after_heartbeat="member-2"), consumer_loop))
    fence.begin()
    fence.check()
    assert len(exits) == 1


def test_the_same_member_inserts(
    monkeypatch: pytest.MonkeyPatch, consumer_loop: asyncio.AbstractEventLoop
) -> None:
    exits = _exits(monkeypatch)
    coordinator = _Coordinator("member-1", after_heartbeat="member-1")
    fence = Fence(_app(coordinator, consumer_loop))
    fence.begin()
    fence.check()
    fence.check()
    assert coordinator.heartbeats == 2 and exits == []


def test_an_unconfirmed_membership_makes_the_insert_wait_not_go(
    monkeypatch: pytest.MonkeyPatch, consumer_loop: asyncio.AbstractEventLoop
) -> None:
    """A resumed worker's consumer first marks its coordinator dead: the heartbeat fails
    without resetting the member id. That must not pass for "still a member"."""
    exits = _exits(monkeypatch)
    coordinator = _Coordinator("member-1", after_heartbeat="member-1", answer=False)
    fence = Fence(_app(coordinator, consumer_loop))
    fence.begin()
    with pytest.raises(FenceUnsure, match="did not confirm"):
        fence.check()
    assert exits == []


def test_a_coordinator_that_does_not_answer_makes_the_insert_wait(
    monkeypatch: pytest.MonkeyPatch, consumer_loop: asyncio.AbstractEventLoop
) -> None:
    exits = _exits(monkeypatch)
    monkeypatch.setattr(fence_module, "ASK_TIMEOUT_S", 0.05)
    coordinator = _Coordinator("member-1", after_heartbeat="member-1", delay_s=5)
    fence = Fence(_app(coordinator, consumer_loop))
    fence.begin()
    with pytest.raises(FenceUnsure, match="did not answer"):
        fence.check()
    assert exits == []
