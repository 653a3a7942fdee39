"""How every Kafka client of auditpipe connects: the one place that turns the ``kafka``
section (bootstrap, TLS, SASL, mutual TLS) into client arguments, for aiokafka's
producers, consumers and admin clients alike (``client_args``) and for the worker's
Faust app (``faust_credentials``). A client built anywhere else would be a plaintext
client on a secured cluster.

When a broker cannot be reached or refuses us, aiokafka logs the cause and raises
"Unable to bootstrap"; ``explain`` connects once more to each bootstrap server, on its
own, and names the cause in one line (not trusted certificate, host name mismatch,
wrong password, TLS spoken to a plaintext listener, nothing listening), so a command
exits with that line, not a traceback or a hang.

Invariants: TLS verifies the broker's certificate and host name unless
``kafka.ssl_check_hostname`` is off (the certificate is still verified); no password is
ever logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from pipeline.config import ConfigError, KafkaConfig, read_secret

PROBE_TIMEOUT_S = 10.0


def ssl_context(kafka: KafkaConfig) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None otherwise): the CA file or the
    system's CAs, the client certificate for mutual TLS, TLS 1.2 at least."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    for setting, path in (
        ("ssl_cafile", kafka.ssl_cafile),
        ("ssl_certfile", kafka.ssl_certfile),
        ("ssl_keyfile", kafka.ssl_keyfile),
    ):
        if path is not None and not path.is_file():
            raise ConfigError(f"kafka.{setting}: {path} does not exist")
    try:
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = kafka.ssl_check_hostname
        if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
            context.load_cert_chain(
                str(kafka.ssl_certfile),
                str(kafka.ssl_keyfile),
                password=kafka.ssl_key_password.get_secret_value() or None,
            )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"kafka TLS: cannot load the CA file or the client certificate and key ({exc})"
        ) from None
    return context


def _password(kafka: KafkaConfig) -> str:
    return read_secret(kafka.password, kafka.password_file, "kafka.password")


def client_args(kafka: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient:
    the bootstrap servers and the security settings."""
    args: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        args["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL_"):
        args["sasl_mechanism"] = kafka.sasl_mechanism
        args["sasl_plain_username"] = kafka.username
        args["sasl_plain_password"] = _password(kafka)
    return args


def faust_credentials(kafka: KafkaConfig) -> Any:
    """The Faust app's ``broker_credentials`` (None for PLAINTEXT). Faust derives the
    security protocol from them: SASL credentials with a TLS context are SASL_SSL."""
    import faust

    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=kafka.username,
            password=_password(kafka),
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


NOT_ANSWERING = ("nothing listens", "no answer", "cannot connect")
"""Causes of ``explain`` that mean a broker did not answer at all (rather than refused)."""


async def explain(kafka: KafkaConfig) -> str | None:
    """Why no broker of ``kafka.bootstrap`` accepts us, in one line; None when one
    does (the failure was elsewhere)."""
    causes = []
    for server in kafka.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            cause = await asyncio.wait_for(_probe(kafka, host, int(port)), PROBE_TIMEOUT_S)
        except TimeoutError:
            cause = f"no answer within {PROBE_TIMEOUT_S:.0f} s" + _plaintext_hint(kafka)
        if cause is None:
            return None
        causes.append(f"{server.strip()}: {cause}")
    return "; ".join(causes)


async def _probe(kafka: KafkaConfig, host: str, port: int) -> str | None:
    """Connect to one broker as the clients do and ask for its API versions."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    args = client_args(kafka)
    try:
        conn = await create_conn(
            host,
            port,
            ssl_context=args.get("ssl_context"),
            security_protocol=kafka.security_protocol,
            sasl_mechanism=args.get("sasl_mechanism", "PLAIN"),
            sasl_plain_username=args.get("sasl_plain_username"),
            sasl_plain_password=args.get("sasl_plain_password"),
            max_idle_ms=PROBE_TIMEOUT_S * 1000,
        )
    except ssl.SSLCertVerificationError as exc:
        return _untrusted(kafka, exc)
    except ssl.SSLError as exc:
        return f"TLS failed ({exc.reason or exc}){_tls_hint(kafka, exc)}"
    except ConnectionRefusedError:
        return "nothing listens there (connection refused)"
    except KafkaError as exc:
        return _refused(kafka, exc)
    except OSError as exc:
        return f"cannot connect ({exc.strerror or exc})"
    conn.close()
    return None


def _untrusted(kafka: KafkaConfig, exc: ssl.SSLCertVerificationError) -> str:
    reason = exc.verify_message or str(exc)
    if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
        return f"the broker's certificate does not name this host ({reason})"
    where = kafka.ssl_cafile or "the system's trusted CAs"
    return (
        f"the broker's certificate is not trusted ({reason}): it is not signed by a CA "
        f"of {where} (kafka.ssl_cafile)"
    )


def _tls_hint(kafka: KafkaConfig, exc: ssl.SSLError) -> str:
    text = str(exc).lower()
    if "wrong version number" in text or "record layer failure" in text:
        return ": the listener does not speak TLS (is kafka.security_protocol right?)"
    if "certificate required" in text or "unknown ca" in text or "bad certificate" in text:
        return ": the broker refused our client certificate (kafka.ssl_certfile)"
    return ""


def _plaintext_hint(kafka: KafkaConfig) -> str:
    if kafka.security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        return " (a TLS listener does not answer plaintext: is kafka.security_protocol right?)"
    return ""


def _refused(kafka: KafkaConfig, exc: Exception) -> str:
    name = type(exc).__name__
    if "Authentication" in name or "authentication" in str(exc).lower():
        return (
            f"authentication failed for user {kafka.username!r} with {kafka.sasl_mechanism} "
            "(wrong username or password, or a mechanism the broker does not enable)"
        )
    if "UnsupportedSaslMechanism" in name:
        return f"the broker does not enable SASL mechanism {kafka.sasl_mechanism}"
    first = (str(exc).splitlines() or [name])[0][:200].removeprefix(f"{name}: ")
    hint = _plaintext_hint(kafka)
    if kafka.security_protocol == "SSL" and kafka.ssl_certfile is None:
        hint = " (does the listener require a client certificate? kafka.ssl_certfile)"
    return f"the connection was closed ({first}){hint}"
