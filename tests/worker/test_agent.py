"""The two agents (events and deferred topics) share the dedup window and the batch
thread: a batch's dedup keys may be persisted only once its rows are stored, whichever
agent's batch runs next (``worker/agent.py``, ``Priority.one_batch``)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from pipeline.config import Settings
from pipeline.worker.agent import EventsAgent, Priority


class SharedWindow:
    """The dedup window's bookkeeping as the agents see it: a batch adds its keys while
    it runs, its rows are stored at its end, a persist takes every key added so far."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.stored: set[str] = set()
        self.persisted_unstored: list[str] = []
        self.lock = threading.Lock()

    def prepare(self, partitions: set[int], assigned: set[int]) -> None:
        pass

    def persist(self, event_of_partition: dict[int, Any]) -> None:
        with self.lock:
            taken, self.added = self.added, []
            self.persisted_unstored += [k for k in taken if k not in self.stored]


class Processor:
    """Adds a key per message, takes a while, then stores the rows (like a flush)."""

    def __init__(self, topic: str, window: SharedWindow) -> None:
        self.topic = topic
        self.window = window
        self.next_offsets: dict[int, int] = {}

    def process(self, messages: list[Any]) -> None:
        keys = [f"{self.topic}:{m.offset}" for m in messages]
        with self.window.lock:
            self.window.added += keys
        time.sleep(0.02)
        self.window.stored.update(keys)

    def load_stored_offsets(self, partitions: set[int], ends: dict[int, int]) -> None:
        pass


def message(topic: str, offset: int) -> Any:
    tp = TopicPartition(topic, 0)
    return SimpleNamespace(
        key=b"k",
        value=b"v",
        message=SimpleNamespace(tp=tp, partition=0, offset=offset, timestamp=0.0, acked=False),
    )


def agents(settings: Settings, window: SharedWindow, executor: ThreadPoolExecutor) -> list[Any]:
    topics = (settings.kafka.topic_events, settings.kafka.topic_deferred)
    consumer = SimpleNamespace(
        assignment=lambda: {TopicPartition(t, 0) for t in topics},
        highwater=lambda tp: 100,
    )
    app = SimpleNamespace(consumer=consumer)
    priority = Priority(every_s=0.0)
    return [
        EventsAgent(
            app,  # type: ignore[arg-type]
            settings,
            Processor(topic, window),  # type: ignore[arg-type]
            codec=None,  # type: ignore[arg-type]
            inventory=SimpleNamespace(ready=SimpleNamespace(is_set=lambda: True)),  # type: ignore[arg-type]
            dedup_state=window,  # type: ignore[arg-type]
            rule_state=None,
            stopping=threading.Event(),
            executor=executor,
            watchdog=None,  # type: ignore[arg-type]
            priority=priority,
            deferred=topic == settings.kafka.topic_deferred,
        )
        for topic in topics
    ]


def test_one_agent_never_persists_keys_of_the_others_unstored_batch() -> None:
    settings = Settings()
    window = SharedWindow()
    executor = ThreadPoolExecutor(max_workers=1)
    events, deferred = agents(settings, window, executor)

    async def run(agent: EventsAgent, topic: str) -> None:
        for n in range(20):
            await agent._process([message(topic, n)], caught_up=False)

    async def both() -> None:
        await asyncio.gather(
            run(events, settings.kafka.topic_events), run(deferred, settings.kafka.topic_deferred)
        )

    try:
        asyncio.run(both())
    finally:
        executor.shutdown()
    assert len(window.stored) == 40
    assert window.persisted_unstored == [], "keys persisted before their rows were stored"
