"""Whether Kafka answers and lets the worker at its topics, asked once before the worker
starts (Faust would otherwise retry a refused connection or a missing ACL for ever, or
stop with a traceback)."""

from __future__ import annotations

from typing import Any

from pipeline.config import KafkaConfig, Settings
from pipeline.kafka_clients import client_args

TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30


class KafkaRefused(Exception):
    """The broker answers but refuses us: the message names what and why."""


def worker_topics(settings: Settings) -> list[str]:
    """Every topic the worker reads or writes."""
    kafka = settings.kafka
    return sorted(
        {
            kafka.topic_events,
            kafka.topic_deferred,
            kafka.topic_alerts,
            kafka.topic_deadletter,
            kafka.topic_checkpoints,
            kafka.topic_sandboxes,
            *settings.rules.routes.values(),
        }
    )


async def healthcheck(
    kafka: KafkaConfig, topics: list[str] | None = None, group: str | None = None
) -> None:
    """Raises KafkaConnectionError when no broker of ``kafka.bootstrap`` answers, and
    KafkaRefused when ``topics`` or ``group`` may not be described by us (a missing
    ACL: the principal needs at least Describe, and Read or Write to use them)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_args(kafka), client_id="auditpipe-healthcheck")
    try:
        await admin.start()
        if topics:
            _refused_topics(await admin.describe_topics(topics), kafka)
        if group and not await _group_allowed(admin, group):
            raise KafkaRefused(
                f"Kafka refused {_principal(kafka)} the consumer group {group!r}: "
                "not authorized (missing ACL)"
            )
    finally:
        await admin.close()


def _refused_topics(described: list[dict[str, Any]], kafka: KafkaConfig) -> None:
    denied = [t["topic"] for t in described if t.get("error_code") == TOPIC_AUTHORIZATION_FAILED]
    if denied:
        raise KafkaRefused(
            f"Kafka refused {_principal(kafka)} the topics {', '.join(denied)}: "
            "not authorized (missing ACL)"
        )


async def _group_allowed(admin: Any, group: str) -> bool:
    from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

    try:
        answers = await admin.describe_consumer_groups([group])
    except GroupAuthorizationFailedError:
        return False
    except GroupCoordinatorNotAvailableError:
        return True  # no group has committed yet on a new cluster: joining will tell
    # Each answer's groups are (error_code, group_id, state, ...).
    return all(g[0] != GROUP_AUTHORIZATION_FAILED for a in answers for g in a.groups)


def _principal(kafka: KafkaConfig) -> str:
    return f"user {kafka.username!r}" if kafka.username else "this client"
