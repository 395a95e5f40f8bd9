"""Typed configuration read from YAML.

Every option has a type and a default; an unknown key, a value of the wrong
type or a missing file raises ``ConfigError`` with one line that names the
key, which the CLI prints without a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homeserver import process_roles as pr
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.moderation_config import ContentPolicyConfig, InviteProtectionConfig


class ConfigError(Exception):
    """A configuration problem, stated in one line naming the key."""


@dataclass
class ListenerConfig:
    bind: str = "127.0.0.1"
    port: int = 8008


@dataclass
class RateLimit:
    """A token bucket (Synapse's shape): ``per_second`` refill rate, ``burst_count`` capacity."""

    per_second: float = 1.0
    burst_count: int = 10


@dataclass
class LoginRateLimits:
    """Synapse's ``rc_login``: /login per client IP (every attempt), per account
    (successful logins), and failed password attempts per account (from any IP)."""

    address: RateLimit = field(default_factory=lambda: RateLimit(0.003, 5))
    account: RateLimit = field(default_factory=lambda: RateLimit(0.003, 5))
    failed_attempts: RateLimit = field(default_factory=lambda: RateLimit(0.17, 3))


@dataclass
class RateLimitsConfig:
    enabled: bool = True
    login: LoginRateLimits = field(default_factory=LoginRateLimits)
    # Registrations (and guest accounts), per client IP (Synapse's rc_registration).
    registration: RateLimit = field(default_factory=lambda: RateLimit(0.17, 3))
    message: RateLimit = field(default_factory=lambda: RateLimit(5.0, 50))
    # Invites one local user may send (room invites, and those in createRoom's "invite").
    invites_per_user: RateLimit = field(default_factory=lambda: RateLimit(0.1, 20))
    # Per client IP over every unauthenticated rate-limited action.
    per_ip: RateLimit = field(default_factory=lambda: RateLimit(10.0, 100))
    # Validation mail (requestToken), per client IP and per address (Synapse's
    # rc_3pid_validation), so nobody floods a mailbox through this server.
    threepid_validation: RateLimit = field(default_factory=lambda: RateLimit(0.003, 5))
    # POST /login/get_token per user (the spec suggests at most one a minute).
    login_token: RateLimit = field(default_factory=lambda: RateLimit(0.017, 1))


@dataclass
class DatabaseConfig:
    # SQLite's PRAGMA synchronous under WAL: "full" makes every commit durable
    # (fsync per transaction); "normal" may lose the last commits on power loss.
    sqlite_synchronous: str = "full"
    # PostgreSQL: the most connections each process opens (its pool). Every request,
    # background job and room turn borrows one while it talks to the database.
    pool_size: int = 10


@dataclass
class PasswordHashingConfig:
    """argon2id cost and how many hashes may run at once: each holds ``memory_cost_kib``
    of memory while it runs. The default is the least memory of OWASP's five equivalent
    argon2id profiles (m=7 MiB, t=5, p=1; the others trade memory for passes, from
    m=46 MiB, t=1): the same defence at a third of the memory of m=19 MiB, t=2."""

    max_concurrent: int = 1
    time_cost: int = 5
    memory_cost_kib: int = 7 * 1024
    parallelism: int = 1


@dataclass
class CachesConfig:
    """How much each in-memory cache may hold: their memory grows with traffic, not with
    the configuration, so each has a bound. Events cost 1.5-4 KiB each in memory."""

    # Loaded events kept by nid (the hottest: recent timelines, auth and prev events).
    events: int = 5_000
    # Whole room states kept by state group; one holds an entry per member of its room.
    state_groups: int = 512


@dataclass
class WorkerConfig:
    # The worker's client API port (on client_listener.bind); see README "Scaling out".
    client_port: int = 0
    # What the worker does (homeserver/process_roles.py); none: a generic client worker.
    roles: list[str] | None = None
    # The federation listener's port (on federation_listener.bind): federation_inbound only.
    federation_port: int = 0


@dataclass
class RegistrationConfig:
    enabled: bool = False
    shared_secret: str | None = None
    # Tokens accepted by m.login.registration_token; empty means none.
    tokens: list[str] = field(default_factory=list)
    # Guest accounts (POST /register?kind=guest): off unless the operator turns them on.
    allow_guests: bool = False
    # Localparts nobody may register (M_EXCLUSIVE), e.g. bridge namespaces.
    reserved_localparts: list[str] = field(default_factory=list)
    # Registration must prove an email address (m.login.email.identity); needs `email`.
    require_email: bool = False


@dataclass
class EmailConfig:
    """The operator's SMTP server, through which validation and password-reset
    mail goes. Without ``smtp_host`` the server sends no mail and the email
    endpoints answer M_THREEPID_MEDIUM_NOT_SUPPORTED."""

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_pass: str | None = None
    # STARTTLS is required (refuse a server that does not offer it).
    require_transport_security: bool = False
    # Implicit TLS from the first byte (SMTPS, usually port 465).
    force_tls: bool = False
    notif_from: str = "%(app)s <noreply@localhost>"
    app_name: str = "Matrix"
    # The web client linked from mail (informational; validation links point at
    # this server's public_baseurl).
    client_base_url: str | None = None
    # How long an emailed validation token stays usable.
    validation_token_lifetime_ms: int = 60 * 60 * 1000
    # Email pushers: how long a notification waits, unread, before it is mailed
    # (with the others that arrived meanwhile, in one message).
    notif_delay_ms: int = 10 * 60 * 1000

    @property
    def enabled(self) -> bool:
        return bool(self.smtp_host)


@dataclass
class LoginViaExistingSessionConfig:
    """``POST /login/get_token`` (spec v1.7): a signed-in device mints a single-use
    token that logs another device in (``m.login.token``)."""

    enabled: bool = False
    # Ask for the password again before minting (the spec: always re-prompt).
    require_ui_auth: bool = True
    token_timeout_ms: int = 120_000


@dataclass
class FederationConfig:
    enabled: bool = True
    # Tests on one machine only: allow loopback peers and skip TLS verification.
    insecure_local: bool = False
    # Served at /.well-known/matrix/server when set ("host:port").
    well_known_server: str | None = None
    trusted_key_servers: list[str] = field(default_factory=list)
    # Outbound transactions: back-off after a failure doubles from min to max
    # (with jitter); at most max_concurrent_transactions in flight at once.
    min_retry_ms: int = 5_000
    max_retry_ms: int = 3_600_000
    max_concurrent_transactions: int = 50
    # Inbound transactions processed at the same time (all origins together).
    max_concurrent_inbound: int = 20
    # Which servers this one federates with. Entries are server names, or patterns with
    # "*" ("*.example.org"). allow_list null: every server not denied; a list: only
    # those. deny_list wins over allow_list. Refused servers get 403 M_FORBIDDEN on
    # every inbound request and are never sent to (joins through them fail).
    allow_list: list[str] | None = None
    deny_list: list[str] = field(default_factory=list)
    # Join remote rooms with partial state (send_join omit_members): the join returns
    # without the members, which are fetched in the background (a /sync that does
    # not lazy-load members gets such a room once it is whole).
    partial_state_joins: bool = True


@dataclass
class LimitsConfig:
    max_json_body_bytes: int = 4 * 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    # Undelivered to-device messages one device may hold; more is refused (429).
    max_to_device_inbox: int = 10000


@dataclass
class ThumbnailSize:
    width: int = 32
    height: int = 32
    method: str = "crop"


def _default_thumbnail_sizes() -> list[ThumbnailSize]:
    """The sizes the spec says servers SHOULD produce (client-server "Thumbnails")."""
    return [
        ThumbnailSize(32, 32, "crop"),
        ThumbnailSize(96, 96, "crop"),
        ThumbnailSize(320, 240, "scale"),
        ThumbnailSize(640, 480, "scale"),
        ThumbnailSize(800, 600, "scale"),
    ]


@dataclass
class MediaConfig:
    # Where content files live; relative to data_dir. Files are named by content hash.
    store_path: str = "media_store"
    # Total bytes of media one local user may have uploaded; null: no quota.
    max_bytes_per_user: int | None = 1024 * 1024 * 1024
    # Uploads created with /media/v1/create and not yet uploaded, per user (429 beyond).
    max_pending_uploads: int = 10
    # How long an id from /media/v1/create stays usable, in milliseconds.
    unused_expiry_ms: int = 24 * 60 * 60 * 1000
    thumbnail_sizes: list[ThumbnailSize] = field(default_factory=_default_thumbnail_sizes)
    # Images with more pixels than this are not thumbnailed (413 M_TOO_LARGE).
    max_thumbnail_pixels: int = 32 * 1024 * 1024
    # The legacy unauthenticated /_matrix/media/v3/download|thumbnail serve only
    # media stored before this time (ms since the epoch): the spec's "freeze".
    # 0 freezes everything (new servers); null: no freeze (not recommended).
    legacy_cutoff_ts: int | None = 0
    # Bytes of remote media kept in the cache; the least recently used goes first.
    remote_cache_max_bytes: int = 5 * 1024 * 1024 * 1024
    # Largest remote file fetched; larger answers 502 M_TOO_LARGE. null: max_upload_bytes.
    max_remote_bytes: int | None = None
    # Delete media not downloaded for this many days (null: keep forever).
    local_retention_days: int | None = None
    remote_retention_days: int | None = 90
    # GET /media/preview_url: off by default (it makes the server fetch URLs).
    url_preview_enabled: bool = False
    # Networks a preview may never reach; loopback, private, link-local, multicast
    # and reserved addresses are always refused unless listed in url_preview_ip_allow.
    url_preview_ip_deny: list[str] = field(default_factory=list)
    url_preview_ip_allow: list[str] = field(default_factory=list)
    # A PEM file of extra certificate authorities previews trust for https (an
    # intranet's own CA), besides the system's; null: the system's only.
    url_preview_ca_file: str | None = None


@dataclass
class RetentionPolicy:
    # Milliseconds. max_lifetime: events older than this are purged; null: kept.
    # min_lifetime is accepted for Synapse compatibility (nothing is purged sooner anyway).
    min_lifetime: int | None = None
    max_lifetime: int | None = None


@dataclass
class RetentionConfig:
    """Message retention: a server default and per-room m.room.retention (issue 14)."""

    enabled: bool = False
    default_policy: RetentionPolicy = field(default_factory=RetentionPolicy)
    # Bounds on a room's m.room.retention max_lifetime (ms); a value outside is clamped.
    allowed_lifetime_min: int | None = None
    allowed_lifetime_max: int | None = None
    # How often the purge job runs (ms).
    purge_interval_ms: int = 24 * 60 * 60 * 1000


@dataclass
class TurnConfig:
    uris: list[str] = field(default_factory=list)
    shared_secret: str | None = None
    user_lifetime_seconds: int = 86400


@dataclass
class SupportContact:
    """One way to reach the server's admins (spec: /.well-known/matrix/support)."""

    role: str = "m.role.admin"
    matrix_id: str | None = None
    email_address: str | None = None


@dataclass
class SupportConfig:
    """Served at /.well-known/matrix/support; nothing set: that URL answers 404."""

    contacts: list[SupportContact] = field(default_factory=list)
    support_page: str | None = None


@dataclass
class MetricsConfig:
    """The Prometheus listener (/metrics and /health); off unless enabled."""

    enabled: bool = False
    bind_address: str = "127.0.0.1"
    port: int = 9000


@dataclass
class LoggingConfig:
    # text: one human-readable line per record; json: one JSON object per line.
    format: str = "text"
    # Overrides the older top-level log_level when set.
    level: str | None = None


@dataclass
class UserDirectoryConfig:
    # false (the default): POST /user_directory/search finds the users who share a
    # room with the searcher or are in a public room (join rule public or history
    # world_readable). true: every active, non-guest local account as well.
    search_all_users: bool = False


@dataclass
class PrivacyConfig:
    # Record the client IP address and User-Agent of each device's last request
    # (shown by the device list and the admin whois API). false: never stored.
    store_client_ips: bool = True
    # How long a stored IP/User-Agent is kept after the device's last request
    # (a duration: 30s, 15m, 12h, 28d, 2w); null: kept until the device goes.
    client_ip_retention: str | None = "28d"

    @property
    def client_ip_retention_ms(self) -> int | None:
        return (
            None
            if self.client_ip_retention is None
            else parse_duration_ms(self.client_ip_retention)
        )


_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_UNITS_MS["w"] = 7 * _DURATION_UNITS_MS["d"]


def parse_duration_ms(text: str) -> int:
    """``"28d"`` -> milliseconds; units ms, s, m, h, d, w. ValueError when malformed."""
    value = text.strip().lower()
    for unit in ("ms", "s", "m", "h", "d", "w"):
        number = value.removesuffix(unit)
        if number != value and number.isdigit():
            return int(number) * _DURATION_UNITS_MS[unit]
    raise ValueError(f"not a duration: {text!r}")


@dataclass
class Config:
    server_name: str = ""
    data_dir: str = "."
    database_url: str = ""
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    signing_key_path: str = ""
    tls_certificate_path: str = ""
    tls_private_key_path: str = ""
    public_baseurl: str | None = None
    client_listener: ListenerConfig = field(default_factory=ListenerConfig)
    federation_listener: ListenerConfig = field(default_factory=lambda: ListenerConfig(port=8448))
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    password_hashing: PasswordHashingConfig = field(default_factory=PasswordHashingConfig)
    caches: CachesConfig = field(default_factory=CachesConfig)
    rate_limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    support: SupportConfig = field(default_factory=SupportConfig)
    content_policy: ContentPolicyConfig = field(default_factory=ContentPolicyConfig)
    invite_protection: InviteProtectionConfig = field(default_factory=InviteProtectionConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    login_via_existing_session: LoginViaExistingSessionConfig = field(
        default_factory=LoginViaExistingSessionConfig
    )
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    # Lifetime of access tokens issued together with a refresh token.
    refreshable_access_token_lifetime_ms: int = 5 * 60 * 1000
    default_room_version: str = "12"
    # Application-service registration files (bridges' registration.yaml, as Synapse reads
    # them); relative paths are resolved against the configuration file's folder.
    app_service_config_files: list[str] = field(default_factory=list)
    # Back-off between attempts to deliver a transaction to a service that is down.
    app_service_min_retry_ms: int = 2000
    app_service_max_retry_ms: int = 300_000
    # Whether local users may publish rooms to the public room directory.
    allow_public_room_publishing: bool = True
    # MSC2228 (unstable): an event whose content names a time (ms since the epoch) in
    # org.matrix.self_destruct_after is pruned then, as if redacted. Off by default.
    msc2228_self_destructing_events: bool = False
    log_level: str = "INFO"
    # Worker processes over PostgreSQL (`myelin run --worker NAME`), by name.
    workers: dict[str, WorkerConfig] = field(default_factory=dict)
    # The main process's roles when there are workers (default: all of them).
    main_roles: list[str] | None = None
    # How long a lease (a sender shard, the background jobs) outlives its holder's
    # last renewal: a killed process's work is taken over after at most this long.
    worker_lease_ms: int = 15_000
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    user_directory: UserDirectoryConfig = field(default_factory=UserDirectoryConfig)


def public_client_url(config: Config) -> str:
    """Where clients (and links in mail) reach this server's client API: ``public_baseurl``,
    else the client listener's address. Never taken from a request's Host header, which
    a caller chooses (a password-reset link pointing at their host would leak the token)."""
    base = config.public_baseurl
    if base is None:
        listener = config.client_listener
        base = f"http://{listener.bind}:{listener.port}"
    return base.rstrip("/")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; build nested dataclasses."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        _, item_tp = typing.get_args(tp)
        if item_tp is Any:
            # Free-form (a content policy module's own config): JSON-like, string keys.
            if not all(isinstance(k, str) for k in value):
                raise ConfigError(f"{key}: expected a mapping with string keys")
            return dict(value)
        return {str(k): _convert(v, item_tp, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def _build(cls: Any, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown configuration key")
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def parse_config(data: Any, base_dir: Path) -> Config:
    """Build a ``Config`` from parsed YAML, resolving paths against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration file must be a YAML mapping")
    config: Config = _build(Config, data)
    if not config.server_name:
        raise ConfigError("server_name: required")
    from homeserver.events.identifiers import is_valid_server_name

    if not is_valid_server_name(config.server_name):
        raise ConfigError(f"server_name: {config.server_name!r} is not a valid server name")
    data_dir = (base_dir / config.data_dir).resolve()
    config.data_dir = str(data_dir)
    if not config.database_url:
        config.database_url = f"sqlite:///{data_dir / 'homeserver.db'}"
    if not config.database_url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ConfigError("database_url: must start with sqlite:/// or postgresql://")
    _check_rate_limits(config.rate_limits)
    if config.database.sqlite_synchronous not in ("full", "normal"):
        raise ConfigError("database.sqlite_synchronous: must be full or normal")
    if not 2 <= config.database.pool_size <= 1000:
        raise ConfigError("database.pool_size: must be between 2 and 1000")
    config.signing_key_path = str(data_dir / (config.signing_key_path or "signing.key"))
    config.tls_certificate_path = str(data_dir / (config.tls_certificate_path or "tls.crt"))
    config.tls_private_key_path = str(data_dir / (config.tls_private_key_path or "tls.key"))
    for name in ("client_listener", "federation_listener"):
        listener: ListenerConfig = getattr(config, name)
        if not 0 <= listener.port <= 65535:
            raise ConfigError(f"{name}.port: {listener.port} is not a TCP port")
    if config.default_room_version not in KNOWN_ROOM_VERSIONS:
        raise ConfigError("default_room_version: must be one of 1 to 12")
    _check_observability(config)
    if config.limits.max_json_body_bytes < 65536:
        raise ConfigError("limits.max_json_body_bytes: must be at least 65536")
    fed = config.federation
    if fed.min_retry_ms < 1 or fed.max_retry_ms < fed.min_retry_ms:
        raise ConfigError("federation.max_retry_ms: must be at least min_retry_ms (>= 1)")
    if fed.max_concurrent_transactions < 1 or fed.max_concurrent_inbound < 1:
        raise ConfigError("federation.max_concurrent_*: must be at least 1")
    _check_password_hashing(config.password_hashing)
    if config.caches.events < 1 or config.caches.state_groups < 1:
        raise ConfigError("caches.events, caches.state_groups: must be at least 1")
    if config.limits.max_to_device_inbox < 1:
        raise ConfigError("limits.max_to_device_inbox: must be at least 1")
    _check_media(config, data_dir)
    ca_file = config.media.url_preview_ca_file
    if ca_file is not None:
        resolved = (base_dir / ca_file).resolve()
        if not resolved.is_file():
            raise ConfigError(f"media.url_preview_ca_file: no such file: {resolved}")
        config.media.url_preview_ca_file = str(resolved)
    config.app_service_config_files = [
        str((base_dir / path).resolve()) for path in config.app_service_config_files
    ]
    if not 1 <= config.app_service_min_retry_ms <= config.app_service_max_retry_ms:
        raise ConfigError("app_service_max_retry_ms: must be at least app_service_min_retry_ms")
    _check_support(config.support)
    _check_content_policy(config.content_policy)
    _check_workers(config)
    _check_email(config)
    _check_retention(config.retention)
    return config


_WORKER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _check_workers(config: Config) -> None:
    if not config.workers:
        return
    if config.database_url.startswith("sqlite://"):
        raise ConfigError(
            "workers: several processes need PostgreSQL (database_url: postgresql://...);"
            " SQLite serves one process only"
        )
    ports = {config.client_listener.port, config.federation_listener.port}
    for name, worker in config.workers.items():
        if not _WORKER_NAME.fullmatch(name) or name == "main":
            raise ConfigError(
                f"workers.{name}: a worker name is lowercase letters, digits, - and _"
                " (and not 'main')"
            )
        serves_clients = worker.roles is None or {pr.CLIENT, pr.SYNC} & set(worker.roles)
        if not serves_clients and not worker.client_port:
            pass  # a sender or background worker opens no client listener
        elif not 1 <= worker.client_port <= 65535:
            raise ConfigError(f"workers.{name}.client_port: must be a TCP port (1-65535)")
        elif worker.client_port in ports:
            raise ConfigError(f"workers.{name}.client_port: {worker.client_port} is already used")
        ports.add(worker.client_port)
        if worker.federation_port:
            if worker.federation_port in ports or not 1 <= worker.federation_port <= 65535:
                raise ConfigError(
                    f"workers.{name}.federation_port: must be a free TCP port (1-65535)"
                )
            ports.add(worker.federation_port)
    _check_roles(config)


def _check_roles(config: Config) -> None:
    lists = {"main_roles": config.main_roles}
    lists |= {f"workers.{n}.roles": w.roles for n, w in config.workers.items()}
    for key, roles in lists.items():
        unknown = sorted(set(roles or ()) - set(pr.ROLES))
        if unknown:
            raise ConfigError(f"{key}: unknown role {unknown[0]!r} (roles: {', '.join(pr.ROLES)})")
    for name, worker in config.workers.items():
        inbound = pr.FEDERATION_INBOUND in (worker.roles or ())
        if inbound and not worker.federation_port:
            raise ConfigError(f"workers.{name}.federation_port: needed for federation_inbound")
    by_name = {n: w.roles for n, w in config.workers.items()}
    for role in (pr.FEDERATION_SENDER, pr.BACKGROUND):
        if not pr.processes_with(role, config.main_roles, by_name):
            raise ConfigError(f"workers: no process has the {role} role (main_roles, roles)")
    if config.worker_lease_ms < 1000:
        raise ConfigError("worker_lease_ms: must be at least 1000")


def _check_retention(r: RetentionConfig) -> None:
    values = (
        r.default_policy.min_lifetime,
        r.default_policy.max_lifetime,
        r.allowed_lifetime_min,
        r.allowed_lifetime_max,
    )
    if any(v is not None and v < 1 for v in values):
        raise ConfigError("retention: lifetimes must be at least 1 millisecond (or null)")
    low, high = r.allowed_lifetime_min, r.allowed_lifetime_max
    if low is not None and high is not None and low > high:
        raise ConfigError("retention.allowed_lifetime_min: must not exceed allowed_lifetime_max")
    if r.purge_interval_ms < 1:
        raise ConfigError("retention.purge_interval_ms: must be at least 1")


def _check_email(config: Config) -> None:
    email = config.email
    if not 0 < email.smtp_port <= 65535:
        raise ConfigError(f"email.smtp_port: {email.smtp_port} is not a TCP port")
    if email.force_tls and email.require_transport_security:
        raise ConfigError("email.force_tls and require_transport_security: choose one")
    if email.notif_delay_ms < 0:
        raise ConfigError("email.notif_delay_ms: must be 0 or more")
    if email.validation_token_lifetime_ms < 1000:
        raise ConfigError("email.validation_token_lifetime_ms: must be at least 1000")
    if config.registration.require_email and not email.enabled:
        raise ConfigError("registration.require_email: needs email.smtp_host")
    timeout = config.login_via_existing_session.token_timeout_ms
    if not 1000 <= timeout <= 3_600_000:
        raise ConfigError("login_via_existing_session.token_timeout_ms: must be 1000..3600000")


def _check_observability(config: Config) -> None:
    """Logging, the metrics listener and client-IP retention."""
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    if config.log_level.upper() not in levels:
        raise ConfigError("log_level: must be DEBUG, INFO, WARNING or ERROR")
    if config.logging.level is not None:
        if config.logging.level.upper() not in levels:
            raise ConfigError("logging.level: must be DEBUG, INFO, WARNING or ERROR")
        config.log_level = config.logging.level
    if config.logging.format not in ("text", "json"):
        raise ConfigError("logging.format: must be text or json")
    if not 0 <= config.metrics.port <= 65535:
        raise ConfigError(f"metrics.port: {config.metrics.port} is not a TCP port")
    retention = config.privacy.client_ip_retention
    if retention is not None:
        try:
            ms = parse_duration_ms(retention)
        except ValueError:
            raise ConfigError(
                "privacy.client_ip_retention: expected a duration like 12h or 28d"
            ) from None
        if ms < 1000:
            raise ConfigError("privacy.client_ip_retention: must be at least 1s")


def _check_rate_limits(limits: RateLimitsConfig) -> None:
    buckets = {
        "login.address": limits.login.address,
        "login.account": limits.login.account,
        "login.failed_attempts": limits.login.failed_attempts,
        "registration": limits.registration,
        "message": limits.message,
        "invites_per_user": limits.invites_per_user,
        "per_ip": limits.per_ip,
        "threepid_validation": limits.threepid_validation,
        "login_token": limits.login_token,
    }
    for name, bucket in buckets.items():
        if bucket.per_second < 0 or bucket.burst_count < 1:
            raise ConfigError(f"rate_limits.{name}: per_second must be >= 0 and burst_count >= 1")


def _check_password_hashing(hashing: PasswordHashingConfig) -> None:
    """argon2's own lower bounds (memory at least 8 KiB per lane), and a working pool."""
    if hashing.max_concurrent < 1 or hashing.time_cost < 1 or hashing.parallelism < 1:
        raise ConfigError(
            "password_hashing: max_concurrent, time_cost and parallelism must be at least 1"
        )
    if hashing.memory_cost_kib < 8 * hashing.parallelism:
        raise ConfigError("password_hashing.memory_cost_kib: must be at least 8 x parallelism")


def _check_media(config: Config, data_dir: Path) -> None:
    """Resolve the media store path and check the media limits."""
    import ipaddress

    media = config.media
    media.store_path = str(data_dir / media.store_path)
    for size in media.thumbnail_sizes:
        if size.method not in ("crop", "scale"):
            raise ConfigError("media.thumbnail_sizes: method must be crop or scale")
        if not 1 <= size.width <= 4096 or not 1 <= size.height <= 4096:
            raise ConfigError("media.thumbnail_sizes: width and height must be 1..4096")
    if media.max_bytes_per_user is not None and media.max_bytes_per_user < 0:
        raise ConfigError("media.max_bytes_per_user: must not be negative")
    if media.max_pending_uploads < 1 or media.unused_expiry_ms < 1:
        raise ConfigError("media.max_pending_uploads, unused_expiry_ms: must be at least 1")
    if media.remote_cache_max_bytes < 0 or media.max_thumbnail_pixels < 1:
        raise ConfigError("media.remote_cache_max_bytes, max_thumbnail_pixels: out of range")
    for days in (media.local_retention_days, media.remote_retention_days):
        if days is not None and days < 1:
            raise ConfigError("media.*_retention_days: must be at least 1 (or null)")
    for key in ("url_preview_ip_deny", "url_preview_ip_allow"):
        for net in getattr(media, key):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"media.{key}: {net!r} is not an IP network") from None


def _check_content_policy(policy: ContentPolicyConfig) -> None:
    """Patterns must compile and modules must be named "module:Class"; the modules
    themselves are imported when the server starts (homeserver/rooms/content_policy.py)."""
    import re

    for i, pattern in enumerate(policy.blocked_patterns):
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"content_policy.blocked_patterns[{i}]: {e}") from None
    for i, word in enumerate(policy.blocked_words):
        if not word.strip():
            raise ConfigError(f"content_policy.blocked_words[{i}]: must not be empty")
    for i, mod in enumerate(policy.modules):
        path, _, cls = mod.module.partition(":")
        if not path or not cls:
            raise ConfigError(
                f"content_policy.modules[{i}].module: expected 'package.module:ClassName'"
            )


def _check_support(support: SupportConfig) -> None:
    for i, contact in enumerate(support.contacts):
        key = f"support.contacts[{i}]"
        if not contact.matrix_id and not contact.email_address:
            raise ConfigError(f"{key}: needs matrix_id or email_address")
        if contact.matrix_id is not None and not contact.matrix_id.startswith("@"):
            raise ConfigError(f"{key}.matrix_id: must be a user id (@user:server)")
        if not contact.role:
            raise ConfigError(f"{key}.role: must not be empty")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the YAML file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {p}") from None
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {p}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: invalid YAML{where}") from None
    return parse_config(data, p.parent)
