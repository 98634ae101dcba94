"""VTP's one typed configuration object, read from the environment (see `.env.example`)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogFormat = Literal["text", "json"]
# Lists come from the environment as comma-separated strings, not JSON.
StrList = Annotated[list[str], NoDecode]
_ORIGIN = re.compile(
    r"(https?|wss?)://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?|(https?|wss?)://\[[0-9A-Fa-f:.]+\](:\d{1,5})?"
)


class Config(BaseSettings):
    """Every setting VTP reads. Field names map to `VTP_<NAME>` environment variables,
    except the three service URLs that conventionally have no prefix."""

    model_config = SettingsConfigDict(
        env_prefix="VTP_",
        env_file=None,
        extra="ignore",
        populate_by_name=True,
    )

    # --- HTTP listener -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = None
    max_body_bytes: int = Field(default=1 * 1024 * 1024, ge=1024)
    # HTTPS of its own (vtp.https): a PEM certificate (chain) and its key, both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # With TLS: a plain-HTTP listener on this port that redirects every request to HTTPS.
    http_redirect_port: int | None = Field(default=None, ge=1, le=65535)
    # Strict-Transport-Security max-age on HTTPS responses (0 = no HSTS header).
    hsts_max_age_s: int = Field(default=0, ge=0)
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks, e.g.
    # 10.0.0.0/8); from anyone else the header is ignored (vtp.forwarded).
    trusted_proxies: StrList = Field(default_factory=list)

    # --- State and logs --------------------------------------------------------------
    state_dir: Path = Path("./var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = "text"
    # Level for other packages' loggers (aioice, aiortc, pgserver, asyncio, ...): their
    # INFO lines drown VTP's own, so they speak from WARNING unless asked.
    log_libraries: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # --- External services (unset = embedded default) -------------------------------
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)

    s3_endpoint: str | None = None
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "vtp"
    s3_region: str = "us-east-1"
    s3_secure: bool = False

    # --- Auth ------------------------------------------------------------------------
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "vtp"
    access_token_ttl_s: int = Field(default=900, ge=5)
    refresh_token_ttl_s: int = Field(default=14 * 24 * 3600, ge=60)
    bcrypt_cost: int = Field(default=12, ge=4, le=31)
    password_min_length: int = Field(default=10, ge=8)
    login_max_attempts: int = Field(default=5, ge=1)
    login_window_s: int = Field(default=300, ge=1)
    login_ip_max_attempts: int = Field(default=30, ge=1)
    # After login_max_attempts failures for one account from one address, each further
    # failure doubles the wait there (from login_delay_base_s up to login_delay_max_s).
    login_delay_base_s: float = Field(default=2.0, gt=0)
    login_delay_max_s: float = Field(default=300.0, gt=0)

    # --- Limits per user -------------------------------------------------------------
    # New accounts per client address per window (each costs a bcrypt hash).
    register_max_per_address: int = Field(default=10, ge=1)
    register_window_s: int = Field(default=3600, ge=1)
    # Chat messages one user may post per window (all courses and sessions together).
    chat_max_messages: int = Field(default=30, ge=1)
    chat_window_s: int = Field(default=60, ge=1)
    # Open WebSockets per user (live channel and SFU signalling together, every process).
    max_websockets_per_user: int = Field(default=20, ge=1)
    # SFU rooms a user is in at once, peer connections (publications + subscriptions)
    # over all their rooms, and WHIP publications (this process).
    max_rooms_per_user: int = Field(default=4, ge=1)
    max_peer_connections_per_user: int = Field(default=100, ge=1)
    max_whip_per_user: int = Field(default=2, ge=1)
    # Messages per second a live-channel socket may send, and the burst it may save up
    # (a user's sockets together: twice that); a flooding socket is closed (4429).
    live_message_rate: float = Field(default=5.0, gt=0)
    live_message_burst: int = Field(default=40, ge=1)
    # The same for SFU signalling sockets (joining a big class sends a burst of
    # subscribe/answer/ice messages).
    signalling_message_rate: float = Field(default=50.0, gt=0)
    signalling_message_burst: int = Field(default=400, ge=1)
    # One-time password-reset links (issued by an admin, or e-mailed) expire after this.
    password_reset_ttl_s: int = Field(default=1800, ge=60, le=7 * 24 * 3600)

    # --- E-mail (password-reset links; unset host = no e-mail, admins issue links) ----
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "vtp@localhost"
    # STARTTLS before authenticating (port 587); off only for a local relay.
    smtp_starttls: bool = True

    # --- SFU network -----------------------------------------------------------------
    # Addresses the ICE agent gathers host candidates on ("" = every interface aioice
    # finds, which leaves out loopback); tests and single-host setups use 127.0.0.1.
    ice_addresses: StrList = Field(default_factory=list)
    # Public address announced in place of the gathered one (server behind 1:1 NAT).
    ice_announce_address: str | None = None
    # UDP ports for the SFU's ICE host candidates, one per peer connection, in this range
    # (both set): the older mode, without ICE-TCP or ICE restart. Setting them turns the
    # one-port default below off.
    ice_port_min: int | None = Field(default=None, ge=1, le=65535)
    ice_port_max: int | None = Field(default=None, ge=1, le=65535)
    # One UDP port for every peer connection (the SFU is then an ICE-lite agent on it),
    # the default: the mode with ICE-TCP and ICE restart (a client whose network changes
    # keeps its connections). 0: a free port; empty: a port per connection (ephemeral,
    # or the range above).
    ice_udp_port: int | None = Field(default=40000, ge=0, le=65535)
    # With ice_udp_port: also accept ICE over TCP on that port number (RFC 6544 passive
    # candidates, ranked below UDP), for clients whose network drops UDP.
    ice_tcp: bool = True
    stun_urls: StrList = Field(default_factory=list)
    turn_urls: StrList = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    # The certificate (chain, PEM) the TURN server serves its TLS port with (coturn's
    # --cert): turns: URLs are handed to clients only while it is one browsers accept for
    # the URL's host (valid now, for that name, from a CA in the system's trust store).
    # Unset: turns: URLs are always handed out.
    turn_tls_cert: Path | None = None
    turn_credential_ttl_s: int = Field(default=6 * 3600, ge=60)
    # Off (the default): only course live sessions are rooms, for their members. On: any
    # other room name (WHIP ingest, ad-hoc meetings) is open to every signed-in user.
    sfu_open_rooms: bool = False
    room_grace_s: float = Field(default=30.0, ge=0)
    peer_timeout_s: float = Field(default=30.0, ge=1)
    # A signalling WebSocket that drops (the client's network changed) leaves its peer
    # in the room this long, for the client to take back on a new socket (resume_token)
    # with its publications and subscriptions; 0: the peer leaves at once.
    sfu_resume_s: float = Field(default=15.0, ge=0, le=120)
    # A media connection whose client stops answering ICE consent checks, or a
    # subscriber whose reports show it no longer receives what is sent, is closed after
    # this long (RFC 7675 consent freshness: at most 30 s; at least 10 s, as clients send
    # their checks every 2.5-6 s and an ICE-lite server counts on them).
    ice_consent_timeout_s: float = Field(default=25.0, ge=10, le=30)

    # --- Recording -------------------------------------------------------------------
    # Where recordings are written before upload ("" = <state_dir>/recording-spool).
    recording_spool_dir: Path | None = None
    # Multipart upload part size, in MiB (S3 requires at least 5).
    recording_part_size_mb: int = Field(default=16, ge=5, le=5120)
    # Upload retry policy: exponential backoff from the first delay up to the largest.
    recording_retry_first_s: float = Field(default=2.0, gt=0)
    recording_retry_max_s: float = Field(default=300.0, gt=0)
    # Failed upload attempts after which the recording shows as failed (retries go on).
    recording_retry_attempts: int = Field(default=8, ge=1)
    # A recording is stopped automatically after this many seconds.
    recording_max_length_s: int = Field(default=6 * 3600, ge=10)
    # Lifetime of playback URLs (presigned S3 URLs, signed local-disk URLs): they are bearer
    # URLs, so short; the web player asks for a fresh one when a link has expired.
    recording_url_ttl_s: int = Field(default=300, ge=30)

    # --- Events and webhooks (vtp.events) ------------------------------------------
    # The Redis Stream every node appends class events to, and its approximate bound
    # (XADD MAXLEN ~): the oldest entries go first.
    events_stream: str = Field(default="vtp:events", min_length=1, max_length=200)
    events_max_length: int = Field(default=100_000, ge=1000)
    # Webhook delivery: per-attempt timeout, attempts before the dead-letter record,
    # exponential backoff between attempts, deliveries in flight at once (all endpoints).
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_retry_first_s: float = Field(default=5.0, gt=0)
    webhook_retry_max_s: float = Field(default=600.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    # Events waiting for one endpoint; beyond it they are dead-lettered at once.
    webhook_backlog: int = Field(default=10_000, ge=10)
    # A stream entry a crashed deliverer left unacknowledged this long is taken over.
    webhook_claim_idle_s: float = Field(default=60.0, ge=1)
    # Plain-http targets, and targets at loopback/private/link-local addresses (SSRF
    # guard): refused unless allowed (a lab network, tests).
    webhook_allow_http: bool = False
    # Key material for webhook secrets encrypted at rest (unset: derived from the JWT
    # secret); at least 32 characters, the same on every node.
    webhook_secrets_key: SecretStr | None = None
    webhook_allow_private: bool = False
    # Participation counters (talk time, turns, hands) are written this often.
    participation_flush_s: float = Field(default=10.0, gt=0, le=300)
    # How long the session.summary waits for every node's counters once a session ends.
    participation_summary_wait_s: float = Field(default=15.0, ge=0, le=300)

    # --- metrics -----------------------------------------------------------------------
    # Bearer token Prometheus presents at /metrics (admins' access tokens work too);
    # unset: only admins can read them.
    metrics_token: SecretStr | None = None

    # --- cluster (vtp.cluster) ------------------------------------------------------------
    # This node's id in the registry (unset: <hostname>-<pid>-<random>; --workers sets
    # <id or hostname>-w<index>).
    node_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    # The URL other nodes and clients reach this node at (not the load balancer's);
    # "{port}" in it is replaced by the node's own port. Unset: http(s)://host:port.
    node_url: str | None = None
    # A listener of this node's own besides the (shared) VTP_PORT, so that a redirect
    # reaches this node and not the next one behind the shared port; --workers sets it.
    node_port: int | None = Field(default=None, ge=1, le=65535)
    # Region label of this node; placement prefers nodes of the opening node's region.
    region: str = Field(default="", max_length=64)
    # Several nodes share this Redis/PostgreSQL (more hosts, or --workers): rooms are
    # placed on one node each (others redirect). Refuses the embedded Redis, which one
    # process cannot share with another. Off: this process serves every room asked of it.
    cluster: bool = False
    # Node processes `vtp serve` starts on this host (one per core), sharing VTP_PORT.
    workers: int = Field(default=1, ge=1, le=256)
    # Bind VTP_PORT with SO_REUSEPORT, so that several processes share it (--workers).
    reuse_port: bool = False
    # How often a node writes its heartbeat, and how long its entry outlives the last one
    # (a node that stops is gone from the registry within this TTL).
    node_heartbeat_s: float = Field(default=2.0, gt=0, le=5)
    node_ttl_s: float = Field(default=6.0, ge=1, le=10)
    # SIGTERM drains the node: it takes no new rooms at once, and its open rooms stay
    # until they empty (the class ends) or this many seconds pass; then their clients are
    # sent to another node, recordings are finished and uploaded, and the process exits.
    drain_timeout_s: float = Field(default=600.0, ge=0, le=24 * 3600)
    # Origins pages may open connections to besides their own and the live nodes' URLs in
    # the registry (which the Content-Security-Policy allows by itself): e.g. nodes that
    # join later behind a wildcard, "https://*.vtp.example". Comma-separated.
    cluster_origins: StrList = Field(default_factory=list)
    # Cascade: once a room's node has this many peers (as of its last heartbeat), a
    # subscriber arriving at another node is served there, from one copy of each stream
    # the room's node relays to it, instead of being sent to the room's node. 0: never.
    cascade_peers: int = Field(default=0, ge=0)

    @field_validator(
        "ice_addresses",
        "stun_urls",
        "turn_urls",
        "trusted_proxies",
        "cluster_origins",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("turn_urls", "stun_urls")
    @classmethod
    def _ice_urls(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # RFC 7064/7065: what a browser's RTCIceServer accepts for each list
        schemes = ("turn:", "turns:") if info.field_name == "turn_urls" else ("stun:", "stuns:")
        for url in value:
            if not url.startswith(schemes):
                raise ValueError(f"{url!r} is not a {' or '.join(schemes)} URL")
        return value

    @field_validator("ice_udp_port", mode="before")
    @classmethod
    def _no_udp_port(cls, value: object) -> object:
        # VTP_ICE_UDP_PORT= (empty): the per-connection mode without a range
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _one_media_mode(self) -> Config:
        # a port range asks for the per-connection mode: the one-port default gives way
        # (both set explicitly is an error, which vtp.sfu.ice reports)
        ranged = self.ice_port_min is not None or self.ice_port_max is not None
        if ranged and "ice_udp_port" not in self.model_fields_set:
            self.ice_udp_port = None
        return self

    @field_validator("cluster_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        # one CSP source each: a scheme, a host (a leading "*." allowed), maybe a port
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin such as https://node1.example:8443 "
                    "or https://*.example"
                )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Config:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set VTP_TLS_CERT and VTP_TLS_KEY together")
        return self

    @field_validator("jwt_secret", "webhook_secrets_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # A short key is guessable offline (the JWT key from any token a user holds).
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError(f"VTP_{str(info.field_name).upper()} must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _heartbeat_within_ttl(self) -> Config:
        if self.node_heartbeat_s * 2 > self.node_ttl_s:
            raise ValueError("VTP_NODE_TTL_S must be at least twice VTP_NODE_HEARTBEAT_S")
        return self

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def embedded_object_store(self) -> bool:
        return not self.s3_endpoint

    @property
    def data_dir(self) -> Path:
        return self.state_dir.resolve()

    @property
    def recording_spool(self) -> Path:
        if self.recording_spool_dir is not None and str(self.recording_spool_dir):
            return self.recording_spool_dir.resolve()
        return self.data_dir / "recording-spool"


def load_config(**overrides: object) -> Config:
    """Read the environment; keyword overrides win (used by tests and the CLI)."""
    return Config(**overrides)  # type: ignore[arg-type]
