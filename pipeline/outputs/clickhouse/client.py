"""A clickhouse-connect client from the configuration."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseConfig, read_secret


def password(config: ClickHouseConfig) -> str:
    """The configured password, else the first line of password_file, else empty."""
    return read_secret(config.password, config.password_file, "clickhouse.password")


def connect(config: ClickHouseConfig, **kwargs: Any) -> Client:
    """A client for config.url (http or https), as config.user."""
    url = urlparse(config.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"clickhouse.url must be http(s)://host:port, got {config.url!r}")
    secure = url.scheme == "https"
    secret = password(config)
    tls: dict[str, Any] = {}
    if secure:
        tls["verify"] = config.verify
        if config.ca_file is not None:
            tls["ca_cert"] = str(config.ca_file)
        if config.client_cert is not None and config.client_key is not None:
            tls["client_cert"] = str(config.client_cert)
            tls["client_cert_key"] = str(config.client_key)
            # With a password: the certificate at the TLS level and the user's password
            # (a TLS front or proxy verifies the certificate). Without: ClickHouse's
            # certificate authentication (a user with <ssl_certificates>).
            tls["tls_mode"] = "strict" if secret else "mutual"
    return clickhouse_connect.get_client(
        host=url.hostname,
        port=url.port or (8443 if secure else 8123),
        secure=secure,
        **tls,
        username=config.user,
        password=secret,
        connect_timeout=5,
        send_receive_timeout=120,
        compress=False if config.compression == "none" else config.compression,
        # No server session: the worker inserts from more than one thread.
        autogenerate_session_id=False,
        **kwargs,
    )
