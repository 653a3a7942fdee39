"""Whether Kafka answers, asked once before the worker starts."""

from __future__ import annotations


async def healthcheck(bootstrap: str) -> None:
    """Raises KafkaConnectionError when no broker of ``bootstrap`` answers."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
    finally:
        await admin.close()
