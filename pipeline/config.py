"""The one configuration object of auditpipe, read once at start-up.

Sources, strongest first: keyword arguments (the CLI's flags), environment variables,
the YAML file, the defaults below. An environment variable names a section and a field,
``AUDITPIPE_<SECTION>_<FIELD>``: ``AUDITPIPE_KAFKA_BOOTSTRAP=host:9092`` sets
``kafka.bootstrap``. The YAML file is named by ``--config`` or ``AUDITPIPE_CONFIG`` and
holds the same sections::

    kafka:
      bootstrap: 127.0.0.1:9092
    sink:
      max_rows: 50000

The field docstrings below are the configuration reference (``auditpipe config``
prints the effective values).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from pipeline.schema.vocabulary import Category, Level

CONFIG_FILE_ENV = "AUDITPIPE_CONFIG"


class _Section(BaseModel):
    # A misspelt setting is an error, not silently ignored.
    # Assignments are checked too: a secret set in code is still a SecretStr.
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, validate_assignment=True
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        """An empty value of an optional setting (``AUDITPIPE_KAFKA_SSL_CAFILE=``) unsets
        it, instead of becoming the path "." or the name ""."""
        if not isinstance(data, dict):
            return data
        optional = {n for n, f in cls.model_fields.items() if f.default is None}
        return {k: None if v == "" and k in optional else v for k, v in data.items()}


class KafkaConfig(_Section):
    """Where the broker is and what the topics are called."""

    bootstrap: str = "127.0.0.1:9092"
    """Bootstrap servers, comma-separated host:port."""
    topic_events: str = "audit.events"
    """Topic the collectors write event batches to."""
    topic_alerts: str = "audit.alerts"
    """Topic alerts are published on."""
    topic_deadletter: str = "audit.deadletter"
    """Topic for what cannot be processed, each record with its reason."""
    topic_checkpoints: str = "audit.checkpoints"
    """Topic of the second copy of the signed chain-head checkpoints (JSON), which
    `auditpipe verify` compares with ClickHouse."""
    topic_deferred: str = "audit.events.deferred"
    """Where the worker moves messages of a sandbox or tenant over its rate limit
    (``fairness``): stored later, from a lower-priority path. Same partitions as
    topic_events (a message keeps its partition), so one worker holds both."""
    topic_sandboxes: str = "audit.sandboxes"
    """Compacted inventory topic: sandbox_id -> owner, environment, image, labels."""
    partitions: int = Field(6, ge=1)
    """Partitions of each topic that `auditpipe init` creates."""
    replication_factor: int = Field(1, ge=1)
    """Replicas of each topic that `auditpipe init` creates, and of the worker's state
    topics (Faust's changelogs): 1 on the local stack, 3 on a cluster (with the brokers'
    min.insync.replicas 2, every write is on two brokers before it is acknowledged)."""
    schema_registry_url: str | None = None
    """When set, messages use the Confluent wire format with ids from this registry;
    otherwise Avro single-object encoding with the schema fingerprint."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How every Kafka client of auditpipe (collector, worker, commands) talks to the
    brokers: SSL is TLS (with ssl_certfile/ssl_keyfile: mutual TLS); SASL_SSL is a
    username and password over TLS (Amazon MSK, Confluent Cloud, Aiven, Strimzi);
    SASL_PLAINTEXT sends the password unencrypted (tests only)."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    """SASL mechanism (with SASL_SSL or SASL_PLAINTEXT)."""
    username: str | None = None
    """SASL username (required with SASL_SSL or SASL_PLAINTEXT)."""
    password: SecretStr = SecretStr("")
    """SASL password (a secret: printed masked; prefer password_file or
    AUDITPIPE_KAFKA_PASSWORD to the YAML file)."""
    password_file: Path | None = None
    """File holding the SASL password (its first line); used when password is empty."""
    ssl_cafile: Path | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; unset: the system's
    trusted CAs."""
    ssl_certfile: Path | None = None
    """PEM client certificate (chain) for mutual TLS; needs ssl_keyfile."""
    ssl_keyfile: Path | None = None
    """PEM private key of ssl_certfile."""
    ssl_key_password: SecretStr = SecretStr("")
    """Password of an encrypted ssl_keyfile (a secret: printed masked)."""
    ssl_check_hostname: bool = True
    """Whether a broker's certificate must name the host connected to (leave on: off, a
    certificate of any host the CA signed is accepted)."""

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaConfig:
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not self.username:
            raise ValueError(f"kafka.username is required with {self.security_protocol}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("kafka.ssl_certfile and kafka.ssl_keyfile go together")
        named = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile}
        files = [name for name, path in named.items() if path is not None]
        if files and not tls:
            raise ValueError(
                f"kafka.{files[0]} is set but kafka.security_protocol is "
                f"{self.security_protocol} (SSL or SASL_SSL use it)"
            )
        return self


class ClickHouseConfig(_Section):
    """The ClickHouse server the sink writes to and analysts query."""

    url: str = "http://127.0.0.1:8123"
    """HTTP endpoint of the server."""
    user: str = "default"
    """User the sink and `init` connect as."""
    password: SecretStr = SecretStr("")
    """Password of that user (a secret: printed masked; prefer password_file or
    AUDITPIPE_CLICKHOUSE_PASSWORD to the YAML file)."""
    password_file: Path | None = None
    """File holding the password (its first line); used when password is empty."""
    database: str = "audit"
    """Database of the pipeline's tables."""
    cluster: str = ""
    """A sharded cluster: the name of its `remote_servers` entry on the server of url.
    `init` then applies the migrations to `<database>_local` on every shard (shards) and
    creates a Distributed table over each in database on url's server, which the worker
    writes to and verify reads (deploy/clickhouse/cluster/README.md). Empty: one server."""
    shards: list[str] = []
    """HTTP(S) endpoints of the cluster's shards, one per shard (with cluster); the same
    user, password and TLS settings as url."""
    ca_file: Path | None = None
    """PEM file of the CA(s) that signed the server's certificate (https); unset: the
    system's trusted CAs."""
    client_cert: Path | None = None
    """PEM client certificate for mutual TLS (https); needs client_key."""
    client_key: Path | None = None
    """PEM private key of client_cert."""
    verify: bool = True
    """Whether the server's certificate (and host name) is verified over https (leave on:
    off, anybody on the path can read the audit trail and the password)."""

    @model_validator(mode="after")
    def _tls_is_complete(self) -> ClickHouseConfig:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("clickhouse.client_cert and clickhouse.client_key go together")
        if bool(self.cluster) != bool(self.shards):
            raise ValueError("clickhouse.cluster and clickhouse.shards go together")
        tls_files = self.ca_file or self.client_cert
        if tls_files and not self.url.startswith("https://"):
            raise ValueError(
                "clickhouse.ca_file/client_cert are set but clickhouse.url is not https"
            )
        return self

    compression: Literal["lz4", "zstd", "none"] = "lz4"
    """Compression of inserts and results over HTTP (lz4: 2.5x the insert rate of the
    client's gzip fallback, measured on the local stack)."""


class StackConfig(_Section):
    """The embedded local stack that `auditpipe stack up` runs (no Docker needed)."""

    kafka_port: int = 9092
    """Broker port of the local Kafka (127.0.0.1)."""
    kafka_controller_port: int = 9093
    """KRaft controller port of the local Kafka."""
    kafka_mtls_port: int = 9094
    """Mutual-TLS listener of the secured local Kafka (``secure``)."""
    secure: bool = False
    """Run the stack secured (``stack up --secure``): Kafka's clients' port speaks
    SASL_SSL (SCRAM) and kafka_mtls_port mutual TLS, with an authorizer; ClickHouse's
    ports speak HTTPS and the secure native protocol; a private CA, certificates and
    passwords are made under $AUDITPIPE_HOME/tls, and the client settings to use them
    are written to $AUDITPIPE_HOME/tls/client.yaml."""
    kafka_heap: str = "1g"
    """Java heap of the broker (-Xmx)."""
    clickhouse_http_port: int = 8123
    """HTTP port of the local ClickHouse."""
    clickhouse_tcp_port: int = 9000
    """Native-protocol port of the local ClickHouse."""
    start_timeout_s: float = 90.0
    """How long `stack up` waits for a service to answer before it gives up."""


class PublishConfig(_Section):
    """How collectors batch and send events."""

    batch_events: int = Field(1000, ge=1)
    """Events per Kafka message (one message carries a batch from one sandbox)."""
    linger_ms: int = Field(50, ge=0)
    """How long a partly filled batch may wait for more events."""
    compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = "zstd"
    """Kafka batch compression."""
    max_message_bytes: int = 8 * 1024 * 1024
    """Largest encoded message; a batch over this is split."""


class CollectConfig(_Section):
    """Collectors (`auditpipe collect` and the Python SDK)."""

    spool_dir: Path | None = None
    """Where the collector spools events before Kafka acknowledges them; default
    $AUDITPIPE_HOME/spool/<collector name>."""
    fsync: bool = True
    """fsync each committed group (a crash of the machine loses nothing committed)."""
    max_spool_bytes: int = Field(10 * 1024**3, ge=1024 * 1024)
    """Largest spool on disk; beyond it `emit` waits for Kafka (backpressure, no drop)."""
    tenant: str = "default"
    """The tenant of this collector's events. A JSON-lines source is pinned to it: a line
    naming another tenant is rejected (see trust_source_identity)."""
    sandbox_id: str | None = None
    """The sandbox of this collector's events; default the host name. A JSON-lines line
    naming another sandbox is rejected (see trust_source_identity)."""
    trust_source_identity: bool = False
    """Keep the tenant and sandbox_id a JSON line names (only for a trusted relay that
    gathers several sandboxes' files: a sandbox could otherwise claim another's)."""
    environment: str = "dev"
    """Environment of this collector's sandboxes, the key into min_levels."""
    min_levels: dict[str, Level] = {}
    """Minimum level sent per environment, e.g. {prod-replica: info}; what is below is
    counted and reported in a periodic counts event, not sent."""
    counts_interval_s: float = Field(60.0, gt=0)
    """How often filtered-event counts are published."""
    exit_delivery_timeout_s: float = Field(30.0, ge=0)
    """At exit, how long to wait for Kafka to take what is spooled; what it has not taken
    by then stays spooled for the next start (`collect` then exits with status 3)."""


class ValidateConfig(_Section):
    """What the worker's validate stage dead-letters."""

    max_future_s: float = Field(300.0, ge=0)
    """An event whose ts is further ahead of the worker's clock is dead-lettered."""
    max_field_bytes: int = Field(64 * 1024, ge=1)
    """Longest cmdline, object or attribute value, in bytes."""
    max_attributes: int = Field(256, ge=0)
    """Most attributes an event may carry."""
    max_past_s: float = Field(30 * 86_400.0, gt=0)
    """An event whose ts is further behind the worker's clock is dead-lettered
    (``ts_too_old``): ancient timestamps would each open a day partition of the events
    table, and a batch spread over thousands of days makes ClickHouse refuse inserts."""
    backfill_tenants: dict[str, float] = {}
    """Tenants allowed to send older events (a backfill of old logs): tenant -> the oldest
    age accepted, in seconds (``"*"`` stands for every tenant). Still bounded by the
    storage column's range."""
    max_id_bytes: int = Field(1024, ge=16)
    """Longest tenant, sandbox_id, event_id, action, actor.user, actor.process and
    attribute key, in bytes."""
    max_event_bytes: int = Field(1024 * 1024, ge=1024)
    """Most bytes of text one event may carry (every string and attribute together)."""


class DedupConfig(_Section):
    """The worker's dedup stage."""

    enabled: bool = True
    window_s: float = Field(600.0, gt=0)
    """An event whose key was seen within this many seconds is a duplicate (10 minutes)."""
    buckets: int = Field(10, ge=2)
    """Time buckets the window is kept in; the oldest leaves as a whole."""
    key_fields: list[str] = []
    """Fields that make the key; empty: event_id."""


class CollapseConfig(_Section):
    """Noise reduction: identical repeats stored once with a repeat_count (the worker's
    collapse stage, docs in pipeline/stages/collapse.py)."""

    windows: dict[Category, float] = {"api": 10.0}
    """Per category, the seconds within which repeats (same sandbox, category, action,
    object, outcome and actor) become one stored event; a category not listed is never
    collapsed. Only api calls by default: the security-relevant categories (process,
    file, network, permission, data_transfer, config, auth) are collapsed only where
    listed here, and resource samples carry the values of the resource rollup."""


class PolicyConfig(_Section):
    """The worker's level policy (see pipeline/stages/policy.py for the file's format)."""

    file: Path | None = None
    """YAML file with the minimum stored level per environment and category; re-read when
    it changes. None: every level is stored."""


class RedactConfig(_Section):
    """Masking of secrets and personal data (the worker's redact stage)."""

    enabled: bool = True
    fields: list[str] = [
        "actor.cmdline",
        "actor.parent_cmdline",
        "actor.user",
        "object",
        "attributes",
    ]
    """Where to look: actor.<field>, object, and attributes (every value). The parent's
    command line is searched too: a secret on it (``deploy --token ...``) is the same
    secret as on the child's."""
    disable: list[str] = []
    """Default rules to turn off (docs/stages.md lists them), e.g. email."""
    rules: dict[str, str] = {}
    """Extra rules, name -> regular expression (a group named keep is kept)."""
    key: SecretStr | None = None
    """Key of the tags in masks ([REDACTED:rule:tag], a keyed hash of the secret): give
    every collector and worker the same one to correlate secrets fleet-wide. None:
    key_file."""
    key_file: Path | None = None
    """File holding that key; default $AUDITPIPE_HOME/redact.key, created with a random
    key on first use."""


class RulesConfig(_Section):
    """Detection rules and alerts (docs/rules.md)."""

    enabled: bool = True
    """Run the detection stage."""
    builtin: bool = True
    """Load the default rule pack shipped with auditpipe."""
    paths: list[Path] = []
    """More rule files or directories of *.yaml; lists and macros are shared by all."""
    reload_check_s: float = Field(1.0, gt=0)
    """How often the worker checks the rule files for changes (SIGHUP checks at once)."""
    lateness_s: float = Field(60.0, ge=0)
    """How late (in event time, behind the newest event of its key) an event may arrive
    and still count in threshold and sequence windows."""
    max_window_events: int = Field(10_000, ge=2)
    """Most events one key of a threshold rule (or one step of a sequence) holds in its
    window; beyond it the oldest leave. Bounds the memory and the CPU a flood into one
    window can cost (benchmarks/adversarial.py)."""
    state_interval_s: float = Field(1.0, gt=0)
    """Under load (every take full), how often the windows that changed are written to
    the rule-windows table: each key once per interval, however many batches changed it.
    A worker that has caught up writes them after every batch. A crash, or a rebalance,
    under load loses at most this much of the moved windows' history."""
    suppress_s: float = Field(300.0, ge=0)
    """Repeats of one rule on one sandbox within this become one summary alert with a
    count (a rule's own suppress wins; 0: no suppression)."""
    routes: dict[Literal["low", "medium", "high", "critical"], str] = {}
    """Extra topics per severity, e.g. {critical: audit.alerts.critical}; alerts always go
    to kafka.topic_alerts too."""
    alert_format: Literal["avro", "json"] = "avro"
    """Encoding of alerts on the topics: Avro (self-describing, like events) or JSON."""
    integrity: bool = True
    """Check each sandbox's seq and hash chain as events arrive: a gap, a fork or a
    changed event raises a critical integrity alert (AP-INT-GAP, -FORK, -HASH)."""
    verify_hashes: bool = True
    """With integrity on, also recompute each chained event's hash (about 3 us/event)."""


class CheckpointsConfig(_Section):
    """Signed checkpoints of each sandbox's chain head (audit.chain_checkpoints)."""

    enabled: bool = True
    """Write them (needs rules.integrity, which follows the chain heads)."""
    interval_s: float = Field(60.0, gt=0)
    """How often the worker signs the heads that advanced."""
    key: SecretStr | None = None
    """HMAC-SHA256 key (a secret, printed masked: give it as AUDITPIPE_CHECKPOINTS_KEY).
    None: key_file."""
    key_file: Path | None = None
    """File holding the key; default $AUDITPIPE_HOME/checkpoint.key, created with a
    random key on first use. `auditpipe verify` needs the same key."""
    key_id: str = "local"
    """Name of the key, stored with each checkpoint (to rotate keys)."""


class VerifyConfig(_Section):
    """What `auditpipe verify` expects of stored history."""

    chained_tenants: list[str] = ["*"]
    """Tenants whose events must all carry a hash chain ("*": every tenant). With
    `verify --strict`, their rows without a chain are findings (`unchained`): rows
    inserted past the collectors."""


class RetentionConfig(_Section):
    """How long rows are kept (`auditpipe retention apply` sets the tables' TTLs)."""

    debug_days: float = Field(3, gt=0)
    """Debug events that are not security-relevant."""
    info_days: float = Field(30, gt=0)
    """Other events that are not security-relevant."""
    security_days: float = Field(365, gt=0)
    """Security-relevant events: level notice or above, denied, permission, auth, config."""
    alerts_days: float = Field(365, gt=0)
    """Alerts (audit.alerts)."""
    deadletter_days: float = Field(90, gt=0)
    rollup_days: float = Field(730, gt=0)
    """The policy rollup (counts of events kept back)."""


class FairnessConfig(_Section):
    """Per-sandbox and per-tenant rate limits at the worker (docs/fairness.md).

    Events over a limit are neither dropped nor allowed to delay other tenants: their
    messages move to ``kafka.topic_deferred`` and are stored from there when the worker
    has room (at least one batch per ``deferred_every_s``), counted in
    ``auditpipe_events_deferred_total``; a sandbox over a limit raises a ``flooding``
    alert (AP-FLOOD). Rates are measured on the messages' Kafka timestamps, never ahead
    of the worker's clock, so a backlog read after an outage is judged by when it was
    sent and a forged timestamp earns nothing.
    """

    enabled: bool = True
    """Apply the limits (off: every message is processed in arrival order)."""
    sandbox_events_per_s: float = Field(5_000.0, gt=0)
    """Sustained events per second one sandbox may send (a worker stores about 28,000
    per core: benchmarks/RESULTS.md)."""
    sandbox_burst: int = Field(50_000, ge=1)
    """Events one sandbox may send at once above its rate (the bucket's size)."""
    tenant_events_per_s: float | None = Field(None, gt=0)
    """Sustained events per second all sandboxes of one tenant may send together; a
    tenant's fair share depends on how many share the workers, so it has no default
    (none: no tenant limit)."""
    tenant_burst: int = Field(100_000, ge=1)
    """Events one tenant may send at once above its rate."""
    deferred_every_s: float = Field(1.0, gt=0)
    """While the events topic keeps the worker busy, the deferred path still gets one
    batch at least this often (it gets all the room the events topic leaves)."""
    alert_interval_s: float = Field(300.0, ge=0)
    """One flooding alert per sandbox per this long (in message time) while it floods."""


class WorkerConfig(_Section):
    """The Faust worker."""

    app_id: str = "auditpipe"
    """Faust application id: also the Kafka consumer group."""
    take_messages: int = Field(1024, ge=1)
    """Kafka messages (each a batch of events) processed together."""
    take_within_s: float = Field(0.2, gt=0)
    """Longest wait for a batch of messages to fill."""
    web_port: int = 6066
    """Port of the worker's web endpoint: /metrics, /healthz (liveness), /readyz
    (readiness)."""
    web_bind: str = "127.0.0.1"
    """Address the web endpoint listens on: 127.0.0.1 keeps it on the host; in a pod
    whose kubelet probes it (and Prometheus scrapes it), 0.0.0.0."""
    data_dir: Path | None = None
    """Faust's local state directory; default $AUDITPIPE_HOME/worker/<app_id>."""
    session_timeout_s: float = Field(10.0, ge=6.0)
    """A worker that stops answering (killed, frozen) loses its partitions after this;
    the others take them over."""
    shutdown_grace_s: float = Field(30.0, gt=0)
    """On SIGTERM the worker stops taking messages, finishes and stores the batch in
    progress, signs its checkpoints and commits; each of these waits at most this long
    (keep the orchestrator's grace period, e.g. Kubernetes'
    terminationGracePeriodSeconds, above twice this)."""
    stall_timeout_s: float = Field(60.0, ge=0)
    """A worker whose consumer stops delivering messages while some wait (a known
    faust-streaming failure, seen here after restarts under load) exits with status 75
    after this long, so that its supervisor restarts it; it resumes where the stored rows
    end. 0: never."""
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest message the worker decodes (after Kafka's decompression); a larger one is
    a dead letter (message_too_large) holding its first 64 KiB, its size and SHA-256."""
    max_batch_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """Most bytes one Kafka record batch may decompress to (a few of the largest
    messages); each offset of a larger one is a dead letter (batch_too_large), never
    decompressed: 200 MB of zeros are a 6 KB zstd batch."""
    max_events_per_message: int = Field(50_000, ge=1)
    """Most events one message may hold (collectors send publish.batch_events); more is
    a dead letter (too_many_events), refused before the events are built: a message of
    tiny events would otherwise become about 50 times its size in Python objects."""
    table_store: Literal["memory://", "rocksdb://"] = "rocksdb://"
    """Where Faust keeps table state (the dedup window) between changelog reads:
    rocksdb (via rocksdict) holds large windows on disk."""


class SinkConfig(_Section):
    """The batching ClickHouse sink.

    A batch is also flushed at every checkpoint, that is after each batch of messages the
    worker takes (so at the latest ``worker.take_within_s`` after its first row arrived).
    """

    max_rows: int = Field(25_000, ge=1)
    """Insert at once (in the background) when this many rows are pending; also the
    largest insert. Larger blocks make fewer parts; smaller ones overlap more with
    decoding."""
    max_bytes: int = Field(64 * 1024 * 1024, ge=1)
    """Insert at once when the pending rows' encoded input reaches this many bytes."""
    retry_initial_s: float = Field(0.2, gt=0)
    """First back-off after a failed insert; doubles up to retry_max_s, with jitter."""
    retry_max_s: float = Field(10.0, gt=0)
    """Longest back-off between insert retries."""


class ForwardDestination(_Section):
    """One destination of ``auditpipe forward`` (docs/siem.md). It reads with its own
    consumer group, ``<forward.group>.<name>``, so a destination that is down holds back
    only itself."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Names the destination in logs, metrics and its consumer group."""
    type: Literal["splunk_hec", "syslog", "http", "kafka"]
    """splunk_hec: Splunk's HTTP Event Collector; syslog: RFC 5424 over udp, tcp or tls;
    http: JSON lines POSTed to any collector (a webhook, Elastic _bulk-style, a SOAR);
    kafka: one JSON record per message on a topic of auditpipe's own cluster, for SIEMs
    that read Kafka."""
    format: Literal["ocsf", "ecs", "cef", "native"] = "ocsf"
    """The shape of each record: OCSF 1.8.0, ECS, CEF (syslog) or auditpipe's own."""
    records: Literal["alerts", "events"] = "alerts"
    """alerts: the alerts topic; events: the audit events themselves, from the events
    topic, validated and redacted as the worker stores them."""
    min_severity: Literal["low", "medium", "high", "critical"] = "low"
    """Alerts below this severity are not sent (counted as filtered)."""
    min_level: Level = "debug"
    """events: events below this level are not sent (counted as filtered)."""
    categories: list[Category] = []
    """events: only these categories (empty: every category)."""
    tenants: list[str] = []
    """Only these tenants' records (empty: every tenant)."""
    url: str | None = None
    """splunk_hec: the collector's base URL (https://splunk:8088); http: the URL to POST."""
    token_file: Path | None = None
    """splunk_hec: file holding the HEC token (never in the config itself)."""
    headers: dict[str, str] = {}
    """http: extra request headers."""
    authorization_file: Path | None = None
    """http: file holding the Authorization header's value (``Bearer ...``)."""
    index: str | None = None
    """splunk_hec: the index (default: the token's)."""
    sourcetype: str | None = None
    """splunk_hec: the sourcetype of each event (default: auditpipe:alert or
    auditpipe:event)."""
    ack: bool = False
    """splunk_hec: indexer acknowledgement; a batch counts as delivered only once Splunk
    says it is indexed (the token must have acknowledgement enabled)."""
    gzip: bool = True
    """splunk_hec, http: compress request bodies."""
    topic: str | None = None
    """kafka: the topic to write to (on the cluster of ``kafka.bootstrap``, with its
    connection settings); each message is keyed tenant/sandbox."""
    host: str = "127.0.0.1"
    """syslog: the receiver's host."""
    port: int = Field(514, ge=1, le=65535)
    """syslog: the receiver's port (6514 is syslog over TLS's)."""
    protocol: Literal["udp", "tcp", "tls"] = "tcp"
    """syslog: udp (RFC 5426; no delivery guarantee), tcp with octet counting (RFC 6587)
    or tls (RFC 5425)."""
    ca_file: Path | None = None
    """tls, https: the CA that signed the receiver's certificate (default: the system's)."""
    client_cert: Path | None = None
    """tls, https: client certificate for mutual TLS."""
    client_key: Path | None = None
    """tls, https: the client certificate's key."""
    verify: bool = True
    """tls, https: verify the receiver's certificate and host name."""
    batch_records: int = Field(500, ge=1)
    """Most records per request (or per write to a syslog connection)."""
    timeout_s: float = Field(10.0, gt=0)
    """One request's or connection's time limit; then it is retried."""
    retry_initial_s: float = Field(0.5, gt=0)
    """First back-off after a failed delivery; doubles up to retry_max_s, with jitter."""
    retry_max_s: float = Field(30.0, gt=0)
    """Longest back-off while the destination is down (the forwarder waits: nothing is
    skipped)."""

    @model_validator(mode="after")
    def _needs(self) -> ForwardDestination:
        if self.type in ("splunk_hec", "http") and not self.url:
            raise ValueError(f"destination {self.name}: {self.type} needs url")
        if self.type == "kafka" and not self.topic:
            raise ValueError(f"destination {self.name}: kafka needs topic")
        if self.type == "splunk_hec" and self.token_file is None:
            raise ValueError(f"destination {self.name}: splunk_hec needs token_file")
        if self.format == "cef" and self.type != "syslog":
            raise ValueError(f"destination {self.name}: cef is for syslog destinations")
        return self


class ForwardConfig(_Section):
    """``auditpipe forward``: alerts to SIEMs, each destination at its own pace."""

    group: str = "auditpipe-forward"
    """Prefix of the destinations' consumer groups."""
    destinations: list[ForwardDestination] = []
    """The destinations (YAML; see docs/siem.md for one of each)."""
    metrics_port: int = 6067
    """Port of the forwarder's /metrics (0: none)."""


ENV_PREFIX = "AUDITPIPE_"


class Settings(BaseSettings):
    """All of auditpipe's configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    home: Path = Path(".auditpipe")
    """State directory of the local stack and the worker (data, logs, pid files);
    a relative path is relative to the working directory."""
    kafka: KafkaConfig = KafkaConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    stack: StackConfig = StackConfig()
    publish: PublishConfig = PublishConfig()
    collect: CollectConfig = CollectConfig()
    validation: ValidateConfig = ValidateConfig()
    """The validate stage's settings (the section is not named ``validate``: that would
    shadow pydantic's ``BaseModel.validate``)."""
    dedup: DedupConfig = DedupConfig()
    policy: PolicyConfig = PolicyConfig()
    collapse: CollapseConfig = CollapseConfig()
    redact: RedactConfig = RedactConfig()
    rules: RulesConfig = RulesConfig()
    checkpoints: CheckpointsConfig = CheckpointsConfig()
    verify: VerifyConfig = VerifyConfig()
    retention: RetentionConfig = RetentionConfig()
    fairness: FairnessConfig = FairnessConfig()
    worker: WorkerConfig = WorkerConfig()
    sink: SinkConfig = SinkConfig()
    forward: ForwardConfig = ForwardConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get(CONFIG_FILE_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def worker_data_dir(self) -> Path:
        # Per app id: Faust's table files are not named after the app.
        return self.worker.data_dir or self.home / "worker" / self.worker.app_id


def reference_table() -> str:
    """The configuration reference as a Markdown table (README's, from the docstrings)."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, _Section):
            for field_name, field in section.model_fields.items():
                rows.append(_reference_row(f"{name}.{field_name}", field))
                if field_name == "destinations":  # a list of sections: one row per field
                    rows.extend(
                        _reference_row(f"{name}.destinations[].{item}", inner, env=False)
                        for item, inner in ForwardDestination.model_fields.items()
                    )
        else:
            rows.append(_reference_row(name, info))
    return "\n".join(rows)


def _reference_row(dotted: str, field: Any, env: bool = True) -> str:
    variable = f"`AUDITPIPE_{dotted.replace('.', '_').upper()}`" if env else "(YAML only)"
    default = "(required)" if field.is_required() else field.get_default(call_default_factory=True)
    meaning = " ".join((field.description or "").split())
    return f"| `{dotted}` | {variable} | `{default}` | {meaning} |"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


def read_secret(value: SecretStr, file: Path | None, setting: str) -> str:
    """A secret setting's value, else the first line of its file (``setting``_file),
    else empty. Read when a client is built, never kept in the settings printed."""
    secret = value.get_secret_value()
    if secret or file is None:
        return secret
    try:
        lines = file.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{setting}_file: cannot read {file} ({exc.strerror})") from None
    return lines[0] if lines else ""


def load_settings(config_file: str | Path | None = None) -> Settings:
    """Read the configuration once: env vars over the YAML file over defaults.

    >>> load_settings().kafka.topic_events
    'audit.events'
    """
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        os.environ[CONFIG_FILE_ENV] = str(path)
    elif (named := os.environ.get(CONFIG_FILE_ENV)) and not Path(named).is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={named}: no such file")
    _misspelt_env()
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


OTHER_ENV = {CONFIG_FILE_ENV, "AUDITPIPE_NATIVE", "AUDITPIPE_REQUIRE_NATIVE", "AUDITPIPE_RESOURCES"}
"""Variables of the prefix that are not settings."""


def known_env() -> set[str]:
    """Every setting's environment variable."""
    names = set(OTHER_ENV)
    for name, info in Settings.model_fields.items():
        names.add(ENV_PREFIX + name.upper())
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names.update(f"{ENV_PREFIX}{name.upper()}_{f.upper()}" for f in section.model_fields)
    return names


def _misspelt_env() -> None:
    """An ``AUDITPIPE_*`` variable that is no setting but nearly spells one is an error
    (``AUDITPIPE_KAFKA_BOOTSTAP`` would otherwise be ignored, silently)."""
    import difflib

    known = known_env()
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and name not in known:
            match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.85)
            if match:
                raise ConfigError(f"unknown setting {name}; did you mean {match[0]}?")


def _describe(exc: ValidationError) -> str:
    """One line per problem, naming the setting as the file key and as the environment
    variable (either may be where it came from), with the closest known name for an
    unknown one."""
    lines = ["invalid configuration:"]
    for err in exc.errors():
        parts = [str(part) for part in err["loc"]]
        where = ".".join(parts)
        env = ENV_PREFIX + "_".join(parts).upper()
        if err["type"] == "extra_forbidden":
            hint = _closest(parts)
            lines.append(
                f"  {where} (or {env}): unknown setting"
                + (f"; did you mean {hint}?" if hint else "")
            )
        else:
            lines.append(f"  {where} (or {env}): {err['msg']}")
    return "\n".join(lines)


def _closest(parts: list[str]) -> str | None:
    """The known setting nearest to a misspelt one (``kafka.bootstap``), if any is near."""
    import difflib

    model: Any = Settings
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            match = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            return ".".join([*parts[:depth], match[0]]) if match else None
        model = fields[part].annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return None
