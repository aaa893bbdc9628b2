"""The typed shape of Tailgate's configuration, with production-minded defaults.

Each field documents itself in conf/tailgate.yaml; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RedisSettings:
    """Where Redis is (one node, the master a set of Sentinels names, or a Redis Cluster's
    seeds: wire.connect turns
    these into connections and checks them) and how the wire keys are laid out in it."""

    mode: str = "single"  # "single" (url), "sentinel" (sentinels + master_name) or "cluster" (cluster_nodes)
    url: str = "redis://127.0.0.1:6379/0"  # sentinel mode: its scheme, credentials and db only
    sentinels: list[str] = field(default_factory=list)  # host:port of each sentinel
    master_name: str = ""
    cluster_nodes: list[str] = field(default_factory=list)  # cluster mode: host:port seeds; credentials/TLS from `url`
    sentinel_username: str = ""
    sentinel_password: str = ""  # a secret: set it with TAILGATE_REDIS_SENTINEL_PASSWORD, not in the file
    min_replicas_acked: int = -1  # the bridge's WAIT after each publish step; -1: 1 in sentinel mode, else 0
    replica_ack_timeout: float = 0.5  # seconds that WAIT may take
    prefix: str = "tailgate:"
    history_maxlen: int = 10_000

    @property
    def replicas_to_ack(self) -> int:
        """Replicas the bridge waits for after each publish step (0: it does not wait)."""
        if self.min_replicas_acked >= 0:
            return self.min_replicas_acked
        return 1 if self.mode == "sentinel" else 0


@dataclass
class KafkaSettings:
    """How to reach Kafka; shared by the bridge and the demo producer."""

    bootstrap: str = "127.0.0.1:9092"
    client_id: str = "tailgate-bridge"
    fetch_max_wait_ms: int = 20
    max_poll_records: int = 5_000
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    request_timeout_ms: int = 30_000
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    ssl_cafile: str = ""  # CA bundle the brokers' certificates are checked against ("": the system's)
    ssl_certfile: str = ""  # client certificate, for brokers that require one (mutual TLS)
    ssl_keyfile: str = ""  # its key, unless the certificate file holds it
    ssl_check_hostname: bool = True
    sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = ""  # a secret: set it with TAILGATE_KAFKA_SASL_PASSWORD, not in the file


@dataclass
class RouteSettings:
    """How one topic (or every topic matching a regex) maps to streams."""

    topic: str = ""
    pattern: str = ""
    split_by: str = ""  # "", "key" or "field"
    field: str = ""
    keep_whole: bool = True
    format: str = "auto"  # "auto", "text" or "json"
    text_field: str = "message"
    max_subs: int = 1_000


@dataclass
class BridgeSettings:
    """The Kafka-to-Redis bridge."""

    client: str = "kafka-python"  # the Kafka client library: kafka-python or confluent-kafka (librdkafka)
    topics: list[str] = field(default_factory=list)
    topic_pattern: str = ""
    routes: list[RouteSettings] = field(default_factory=list)
    group_id: str = "tailgate-bridge"
    use_group: bool = True
    instance: int = 0
    instances: int = 1
    max_line_bytes: int = 64 * 1024
    batch_max_lines: int = 500
    metrics_port: int = 9101
    metrics_host: str = "127.0.0.1"
    start_from: str = "earliest"  # where a partition with no offset in Redis nor committed to Kafka starts
    refresh_interval: float = 30.0
    commit_offsets: bool = True  # for lag tools, and the fallback position where Redis lost its offset
    retry_initial: float = 0.1
    retry_max: float = 5.0


@dataclass
class GatewaySettings:
    """The Tornado gateway."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_queue_bytes: int = 4 * 1024 * 1024
    coalesce_ms: float = 10.0
    slow_client_timeout: float = 30.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    drain_timeout: float = 4.0
    drain_grace: float = 0.0  # after SIGTERM: seconds of /readyz 503 while still serving, before closing clients
    workers: int = 1  # processes sharing the port (python -m gateway --workers N); 0: one per core
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 50
    max_backlog: int = 10_000
    max_history_bytes: int = 8 * 1024 * 1024
    history_connections: int = 4
    max_pattern_chars: int = 1_000
    max_filter_terms: int = 20  # keyword terms, excluded terms and fields of one subscribe
    max_glob_minions: int = 50  # minions one file:<minion glob>:<path> subscribe may open
    control_rate: float = 20.0
    control_burst: int = 40
    catalog_window: float = 600.0
    rate_interval: float = 5.0
    file_allowlist: list[str] = field(default_factory=lambda: ["/var/log/**"])
    insecure_bind: bool = False
    allowed_hosts: list[str] = field(default_factory=list)  # Host names served with authentication off
    header_timeout: float = 10.0  # seconds for a request head (also the keep-alive idle limit)
    body_timeout: float = 10.0  # seconds for a request body


@dataclass
class AuthSettings:
    """Authentication and authorisation of viewers (docs/SECURITY.md)."""

    secret: str = ""  # HS256 shared secret, at least 32 bytes
    previous_secret: str = ""  # also accepted while rotating `secret`; never used to mint
    public_key: str = ""  # PEM file (or PEM text) of one or more RSA/EC public keys
    algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256"])
    leeway: float = 10.0  # clock skew tolerated on exp/nbf/iat, seconds
    audience: str = ""  # when set, tokens must carry this `aud`
    issuer: str = ""  # when set, tokens must carry this `iss`
    allowed_origins: list[str] = field(default_factory=list)
    cookie_name: str = "tailgate_token"
    cookie_secure: bool = False
    trusted_proxies: list[str] = field(default_factory=list)
    proxy_user_header: str = ""
    proxy_streams: list[str] = field(default_factory=list)
    max_connections_per_user: int = 20
    max_connections_per_address: int = 50

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.public_key or self.proxy_user_header)


@dataclass
class SaltSettings:
    """How the gateway asks Salt to start tail agents on minions."""

    mode: str = "local"  # "local" (LocalClient on the master), "api" (salt-api) or "off"
    master_config: str = "/etc/salt/master"
    api_url: str = ""
    api_username: str = ""
    api_password: str = ""
    api_eauth: str = "pam"
    api_verify_tls: bool = True
    timeout: float = 10.0
    workers: int = 4  # Salt calls running at once
    max_calls_per_user: int = 2  # of which one user may hold
    queue_timeout: float = 5.0  # seconds a call waits for a worker before `unavailable`
    max_streams: int = 200  # file streams (remote tails) with viewers on this gateway
    max_streams_per_user: int = 20  # distinct file streams one user watches or opened lately
    list_files_rate: float = 1.0  # file listings per second per user, sustained
    list_files_burst: int = 5
    wanted_ttl: float = 15.0
    status_interval: float = 0.5
    minions_ttl: float = 30.0


@dataclass
class Settings:
    """Everything one process needs; built once by `settings.load`."""

    redis: RedisSettings = field(default_factory=RedisSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    salt: SaltSettings = field(default_factory=SaltSettings)
