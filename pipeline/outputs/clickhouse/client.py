"""A clickhouse-connect client from the configuration."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseConfig, ConfigError


def password(config: ClickHouseConfig) -> str:
    """The configured password, else the first line of password_file, else empty."""
    value = config.password.get_secret_value()
    if value or config.password_file is None:
        return value
    try:
        lines = config.password_file.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"clickhouse.password_file: cannot read it ({exc.strerror})") from None
    return lines[0] if lines else ""


def connect(config: ClickHouseConfig, **kwargs: Any) -> Client:
    """A client for config.url (http or https), as config.user."""
    url = urlparse(config.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"clickhouse.url must be http(s)://host:port, got {config.url!r}")
    return clickhouse_connect.get_client(
        host=url.hostname,
        port=url.port or (8443 if url.scheme == "https" else 8123),
        secure=url.scheme == "https",
        username=config.user,
        password=password(config),
        connect_timeout=5,
        send_receive_timeout=120,
        compress=False if config.compression == "none" else config.compression,
        # No server session: the worker inserts from more than one thread.
        autogenerate_session_id=False,
        **kwargs,
    )
