"""Gateway configuration: TOML with embedded defaults, checked key by key.

``load_config(path)`` returns a :class:`Config`; any problem raises :class:`ConfigError` naming
the key (``listen.smtp``, ``agency[2].ori`` ...).  Without a file the embedded defaults run the
whole gateway on one machine: loopback listeners, SQLite under ``./ebts-data``, a demo gallery.
See ``examples/gateway.toml`` for every key with comments.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = "ebts-data"


class ConfigError(ValueError):
    """A configuration problem; ``key`` names the offending setting."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class Agency:
    ori: str
    response_email: str | None = None
    response_soap: str | None = None
    name: str | None = None
    certificates: tuple[str, ...] = ()  # SHA-256 fingerprints of its client certificates
    submits_for: tuple[str, ...] = ()  # ORI prefixes it may submit for (default: its ORI)

    def __post_init__(self):
        if not self.submits_for:
            object.__setattr__(self, "submits_for", (self.ori,))


@dataclass(frozen=True)
class TLS:
    """``[tls]``: on by default; files None until the data directory's own PKI fills them."""

    mode: str = "on"  # "on" | "off" (off: only when every listener is on loopback)
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    min_version: str = "1.2"  # NIST SP 800-52r2: TLS 1.2 or later

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class Jurisdiction:
    ori_prefix: str
    dhs_activated: dt.date | None  # None: not activated


@dataclass(frozen=True)
class Store:
    """``[store]``: where the data key lives (default: ``data.key`` in the data directory), and
    the database: the embedded SQLite journal, or ``url`` a PostgreSQL database shared by
    several nodes, each with its own ``node`` name, holding its claims for ``lease_seconds``."""

    key_file: Path | None = None
    url: str | None = None  # postgresql://USER@HOST:PORT/DB; None: DATA/journal.sqlite3
    node: str | None = None  # None: the host name
    lease_seconds: float = 30.0


@dataclass(frozen=True)
class Admin:
    """``[admin]``: who may reach the admin listener and how sessions behave."""

    hosts: tuple[str, ...] | None = None  # None: the listener's own address (IP and localhost)
    lockout_attempts: int = 5
    lockout_minutes: float = 10.0
    session_idle_minutes: float = 30.0


@dataclass(frozen=True)
class Retention:
    """``[retention]``: how long payloads and audit records are kept."""

    payload_days: float = 90.0
    audit_days: float = 365.0
    check_hours: float = 24.0  # how often the purge job runs


@dataclass(frozen=True)
class Limits:
    """``[limits]``: the budget of every resource a peer can make the gateway spend."""

    max_connections: int = 100  # per listener (SMTP, SOAP, admin); beyond: 421 / 503
    max_connections_per_peer: int = 20  # per listener and peer IP address
    idle_timeout: float = 60.0  # seconds without a byte either way
    command_timeout: float = 30.0  # seconds for one SMTP command line / one HTTP request head
    min_data_rate: int = 1024  # bytes/s during SMTP DATA and HTTP bodies ...
    data_rate_window: float = 10.0  # ... averaged over this many seconds
    max_message_seconds: float = 600.0  # hard deadline of one DATA / one HTTP body
    max_body_size: int = 64 * 1024 * 1024  # HTTP request bodies (413 beyond)
    spool_threshold: int = 256 * 1024  # bytes in memory before spooling; larger: store thread
    max_attachments: int = 10  # per SMTP message
    mime_max_depth: int = 8  # nesting of multiparts / enclosed messages
    mime_max_parts: int = 100  # MIME parts of one message
    max_pixels_per_transaction: int = 120_000_000  # all images, from their headers
    max_work_seconds: float = 60.0  # worker time of one transaction
    # private memory of one worker process (RLIMIT_DATA: its heap and anonymous mappings, not
    # the read-only memory-mapped galleries); 0: no limit
    max_work_memory: int = 4 * 1024**3
    agency_share: float = 0.5  # of the workers one agency may hold (with 2+ agencies configured)


@dataclass(frozen=True)
class Alerts:
    """``[alerts]``: e-mail to the operators when deliveries fail, a queue waits too long or an
    agency's submissions are refused too often; each alert at most once per ``period``."""

    email: tuple[str, ...] = ()  # recipients; none: no alerts
    max_wait: float = 900.0  # seconds the oldest item of a queue may wait
    refusal_rate: int = 10  # refusals of one agency (ORI) within one period that alert
    period: float = 3600.0  # seconds: the refusal window and the least time between two alerts
    check_seconds: float = 30.0  # how often the conditions are checked


@dataclass(frozen=True)
class DaskTLS:
    """``[matcher] scheduler_ca``, ``scheduler_cert``, ``scheduler_key``: the gateway's identity
    towards a ``tls://`` Dask scheduler (mutual TLS).  Default: ``DATA/pki/dask/ca.crt``,
    ``gateway.crt`` and ``gateway.key`` (``ebts-gateway pki issue gateway --role dask``)."""

    ca: Path
    cert: Path
    key: Path

    def files(self) -> tuple[str, str, str]:
        """(CA, certificate, key) as strings (what a worker process is given)."""
        return str(self.ca), str(self.cert), str(self.key)


@dataclass(frozen=True)
class Config:
    data_dir: Path
    listen_smtp: str = "tcp:2525:interface=127.0.0.1"
    listen_soap: str = "tcp:8080:interface=127.0.0.1"
    listen_admin: str = "tcp:8081:interface=127.0.0.1"
    smtp_domain: str = "ebts-gateway.localhost"
    smtp_max_size: int = 64 * 1024 * 1024
    outbound_relay: tuple[str, int] = ("127.0.0.1", 2526)
    outbound_from: str = "ebts-gateway@localhost"
    retry_initial: float = 2.0
    retry_max: float = 300.0
    retry_attempts: int = 30
    workers: int = 2
    gateway_ori: str = "WVIAFIS0Z"  # the ORI our responses come from (FBI CJIS in EBTS samples)
    profile: str = "ebts-10"
    agencies: tuple[Agency, ...] = ()
    jurisdictions: tuple[Jurisdiction, ...] = ()
    lesc_email: str | None = None
    lesc_soap: str | None = None
    lesc_ori: str = "VTICE0900"
    offense_rows: tuple = ()  # [[offense]] rows laid over the default NCIC level table
    gallery_fbi: Path | None = None
    gallery_dhs: Path | None = None
    demo_gallery: bool = True
    demo_subjects: int = 12
    match_threshold: float | None = None  # None: the gallery's calibrated threshold
    search_positions: tuple[int, ...] = tuple(range(1, 11))  # fingers (FGP) used to search
    tls: TLS = field(default_factory=TLS)
    lesc_certificates: tuple[str, ...] = ()
    soap_public_url: str | None = None  # the address the WSDL names; never the Host header
    outbound_tls: bool = False  # STARTTLS with certificate checks towards the relay
    outbound_ca: Path | None = None  # trust for the relay and SOAP pushes (default: our CA)
    min_quality: int = 1  # fingers of lower quality (0-100) are neither searched nor enrolled
    min_fingers: int = 6  # usable fingers of 10 a tenprint needs (in proportion for fewer)
    scheduler: str | None = None  # Dask scheduler "tls://HOST:PORT" of the gallery shards
    scheduler_tls: DaskTLS | None = None  # with a tls:// scheduler: the files of mutual TLS
    store: Store = field(default_factory=Store)
    admin: Admin = field(default_factory=Admin)
    retention: Retention = field(default_factory=Retention)
    alerts: Alerts = field(default_factory=Alerts)
    raw: dict = field(default_factory=dict, repr=False)
    limits: Limits = field(default_factory=Limits)

    def agency(self, ori: str | None) -> Agency | None:
        for agency in self.agencies:
            if agency.ori == ori:
                return agency
        return None


_TOP = {
    "data_dir",
    "listen",
    "smtp",
    "outbound",
    "workers",
    "gateway",
    "validation",
    "agency",
    "jurisdiction",
    "lesc",
    "gallery",
    "matcher",
    "offense",
    "tls",
    "soap",
    "store",
    "admin",
    "retention",
    "limits",
    "alerts",
}


def _table(raw: dict, key: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _str(table: dict, key: str, prefix: str, default=None, required=False):
    if key not in table:
        if required:
            raise ConfigError(f"{prefix}{key}", "is required")
        return default
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{prefix}{key}", f"must be a non-empty string, not {value!r}")
    return value


def _num(table: dict, key: str, prefix: str, default, minimum=0, kind=(int, float)):
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
        raise ConfigError(f"{prefix}{key}", f"must be a number >= {minimum}, not {value!r}")
    return value


def _unknown(table: dict, known: set[str], prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", "unknown setting")


def _endpoint(value: str, key: str) -> str:
    # Twisted server endpoint strings: "tcp:PORT[:interface=ADDR]", "ssl:...", "unix:..."
    kind = value.split(":", 1)[0]
    if kind not in {"tcp", "ssl", "unix", "tcp6"} or ":" not in value:
        raise ConfigError(key, f"not a Twisted endpoint string such as 'tcp:2525': {value!r}")
    return value


def _host_port(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f"must be 'host:port', not {value!r}")
    return host.strip("[]"), int(port)


def _date(value, key: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(key, f"must be a date such as 2009-10-27, not {value!r}")


def parse_config(raw: dict, base: Path | None = None) -> Config:
    """Check a parsed TOML document and build the :class:`Config`."""
    base = base or Path.cwd()
    _unknown(raw, _TOP, "")

    def path(value: str | None, key: str) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)

    data_dir = path(_str(raw, "data_dir", "", DEFAULT_DATA_DIR), "data_dir")
    assert data_dir is not None  # it has a default
    listen = _table(raw, "listen")
    _unknown(listen, {"smtp", "soap", "admin"}, "listen.")
    smtp = _table(raw, "smtp")
    for old in ("tls_cert", "tls_key"):
        if old in smtp:
            raise ConfigError(f"smtp.{old}", "moved: use [tls] cert, key and client_ca")
    _unknown(smtp, {"domain", "max_message_size"}, "smtp.")
    outbound = _table(raw, "outbound")
    _unknown(
        outbound,
        {"smtp_relay", "from_address", "retry_initial", "retry_max", "max_attempts", "tls", "ca"},
        "outbound.",
    )
    gateway = _table(raw, "gateway")
    _unknown(gateway, {"ori"}, "gateway.")
    validation = _table(raw, "validation")
    _unknown(validation, {"profile"}, "validation.")
    lesc = _table(raw, "lesc")
    _unknown(lesc, {"email", "soap", "ori", "certificate"}, "lesc.")
    gallery = _table(raw, "gallery")
    _unknown(gallery, {"fbi", "dhs", "demo", "demo_subjects"}, "gallery.")
    matcher = _table(raw, "matcher")
    _unknown(
        matcher,
        {
            "threshold",
            "search_positions",
            "min_quality",
            "min_fingers",
            "scheduler",
            "scheduler_ca",
            "scheduler_cert",
            "scheduler_key",
        },
        "matcher.",
    )
    positions = matcher.get("search_positions", list(range(1, 11)))
    if (
        not isinstance(positions, list)
        or not positions
        or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 10 for p in positions
        )
    ):
        raise ConfigError(
            "matcher.search_positions",
            f"must be a list of finger positions 1-10, not {positions!r}",
        )

    profile = _str(validation, "profile", "validation.", "ebts-10")
    if profile not in {"ebts-9.1", "ebts-10", "none"}:
        raise ConfigError("validation.profile", f"must be ebts-9.1, ebts-10 or none: {profile!r}")

    agencies = []
    items = raw.get("agency", [])
    if not isinstance(items, list):
        raise ConfigError("agency", "must be an array of tables: [[agency]]")
    seen = set()
    for i, item in enumerate(items):
        prefix = f"agency[{i + 1}]."
        if not isinstance(item, dict):
            raise ConfigError(f"agency[{i + 1}]", "must be a table")
        _unknown(
            item,
            {"ori", "response_email", "response_soap", "name", "certificate", "submits_for"},
            prefix,
        )
        ori = _str(item, "ori", prefix, required=True)
        if ori in seen:
            raise ConfigError(f"{prefix}ori", f"agency {ori} is listed twice")
        seen.add(ori)
        email = _str(item, "response_email", prefix)
        if email is not None and "@" not in email:
            raise ConfigError(f"{prefix}response_email", f"not an e-mail address: {email!r}")
        soap = _str(item, "response_soap", prefix)
        if soap is not None and not soap.startswith(("http://", "https://")):
            raise ConfigError(f"{prefix}response_soap", f"not an http(s) URL: {soap!r}")
        agencies.append(
            Agency(
                ori,
                email,
                soap,
                _str(item, "name", prefix),
                _fingerprints(item, "certificate", prefix),
                _prefixes(item, "submits_for", prefix, ori),
            )
        )

    jurisdictions = []
    items = raw.get("jurisdiction", [])
    if not isinstance(items, list):
        raise ConfigError("jurisdiction", "must be an array of tables: [[jurisdiction]]")
    for i, item in enumerate(items):
        prefix = f"jurisdiction[{i + 1}]."
        if not isinstance(item, dict):
            raise ConfigError(f"jurisdiction[{i + 1}]", "must be a table")
        _unknown(item, {"ori_prefix", "dhs_activated", "name"}, prefix)
        ori_prefix = _str(item, "ori_prefix", prefix, required=True)
        activated = item.get("dhs_activated")
        date = None if activated in (None, False) else _date(activated, f"{prefix}dhs_activated")
        jurisdictions.append(Jurisdiction(ori_prefix, date))

    # The NCIC offense table: checked now so a bad row stops start-up with its key.
    from gateway.routing.interop.offenses import OffenseConfigError, offense_table_from_config

    try:
        offense_table_from_config(raw)
    except OffenseConfigError as exc:
        raise ConfigError(exc.key, str(exc).removeprefix(f"{exc.key}: ")) from None
    offense_rows = tuple(raw.get("offense", ()))
    lesc_email = _str(lesc, "email", "lesc.")
    if lesc_email is not None and "@" not in lesc_email:
        raise ConfigError("lesc.email", f"not an e-mail address: {lesc_email!r}")
    lesc_soap = _str(lesc, "soap", "lesc.")
    if lesc_soap is not None and not lesc_soap.startswith(("http://", "https://")):
        raise ConfigError("lesc.soap", f"not an http(s) URL: {lesc_soap!r}")
    relay = _str(outbound, "smtp_relay", "outbound.", "127.0.0.1:2526")
    listeners = {
        name: _endpoint(_str(listen, name, "listen.", default), f"listen.{name}")
        for name, default in (
            ("smtp", Config.listen_smtp),
            ("soap", Config.listen_soap),
            ("admin", Config.listen_admin),
        )
    }
    tls = _parse_tls(raw, listeners, path)
    soap_section = _table(raw, "soap")
    _unknown(soap_section, {"public_url"}, "soap.")
    public_url = _str(soap_section, "public_url", "soap.")
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise ConfigError("soap.public_url", f"not an http(s) URL: {public_url!r}")
    outbound_tls = outbound.get("tls", False)
    if not isinstance(outbound_tls, bool):
        raise ConfigError("outbound.tls", f"must be true or false, not {outbound_tls!r}")
    outbound_ca = path(_str(outbound, "ca", "outbound."), "outbound.ca")
    if outbound_ca is not None and not outbound_ca.is_file():
        raise ConfigError("outbound.ca", f"no such file: {outbound_ca}")
    return Config(
        data_dir=data_dir,
        listen_smtp=listeners["smtp"],
        listen_soap=listeners["soap"],
        listen_admin=listeners["admin"],
        smtp_domain=_str(smtp, "domain", "smtp.", Config.smtp_domain),
        smtp_max_size=int(_num(smtp, "max_message_size", "smtp.", Config.smtp_max_size, 1024)),
        outbound_relay=_host_port(relay, "outbound.smtp_relay"),
        outbound_from=_str(outbound, "from_address", "outbound.", Config.outbound_from),
        retry_initial=float(_num(outbound, "retry_initial", "outbound.", 2.0, 0.01)),
        retry_max=float(_num(outbound, "retry_max", "outbound.", 300.0, 0.01)),
        retry_attempts=int(_num(outbound, "max_attempts", "outbound.", 30, 1, int)),
        workers=int(_num(raw, "workers", "", 2, 1, int)),
        gateway_ori=_str(gateway, "ori", "gateway.", Config.gateway_ori),
        profile=profile,
        agencies=tuple(agencies),
        jurisdictions=tuple(jurisdictions),
        lesc_email=lesc_email,
        lesc_soap=lesc_soap,
        lesc_ori=_str(lesc, "ori", "lesc.", "VTICE0900"),
        offense_rows=offense_rows,
        gallery_fbi=path(_str(gallery, "fbi", "gallery."), "gallery.fbi"),
        gallery_dhs=path(_str(gallery, "dhs", "gallery."), "gallery.dhs"),
        demo_gallery=bool(gallery.get("demo", True)),
        demo_subjects=int(_num(gallery, "demo_subjects", "gallery.", 12, 1, int)),
        match_threshold=_num(matcher, "threshold", "matcher.", None),
        search_positions=tuple(sorted(set(positions))),
        tls=tls,
        lesc_certificates=_fingerprints(lesc, "certificate", "lesc."),
        soap_public_url=public_url.rstrip("/") if public_url else None,
        outbound_tls=outbound_tls,
        outbound_ca=outbound_ca,
        min_quality=_bounded_int(matcher, "min_quality", "matcher.", 1, 0, 100),
        min_fingers=_bounded_int(matcher, "min_fingers", "matcher.", 6, 1, 10),
        scheduler=_parse_scheduler(matcher),
        scheduler_tls=_parse_scheduler_tls(matcher, data_dir, path),
        store=_parse_store(raw, path),
        admin=_parse_admin(raw),
        retention=_parse_retention(raw),
        alerts=_parse_alerts(raw),
        raw=raw,
        limits=_parse_limits(raw),
    )


def _fingerprints(table: dict, key: str, prefix: str) -> tuple[str, ...]:
    """A SHA-256 fingerprint or a list of them (rotation), normalised to upper-case hex."""
    from gateway.pki import normalize_fingerprint

    value = table.get(key)
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    out = []
    for item in values:
        if not isinstance(item, str):
            raise ConfigError(f"{prefix}{key}", f"must be a SHA-256 fingerprint, not {item!r}")
        try:
            out.append(normalize_fingerprint(item))
        except ValueError as exc:
            raise ConfigError(f"{prefix}{key}", str(exc)) from None
    return tuple(out)


def _prefixes(table: dict, key: str, prefix: str, ori: str) -> tuple[str, ...]:
    value = table.get(key, [ori])
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() and v == v.strip() for v in value)
    ):
        raise ConfigError(f"{prefix}{key}", f"must be a list of ORI prefixes, not {value!r}")
    return tuple(value)


_LOOPBACK = ("127.", "::1", "localhost")


def _on_loopback(endpoint: str) -> bool:
    if endpoint.startswith("unix:"):
        return True
    parts = dict(p.split("=", 1) for p in endpoint.split(":")[2:] if "=" in p)
    interface = parts.get("interface", "").strip("[]")
    return interface.startswith(_LOOPBACK)


def _parse_tls(raw: dict, listeners: dict[str, str], path) -> TLS:
    """``[tls]``: on by default (the gateway's own PKI when no files are named)."""
    table = _table(raw, "tls")
    _unknown(table, {"mode", "cert", "key", "client_ca", "min_version"}, "tls.")
    mode = table.get("mode", "on")
    if mode not in ("on", "off"):
        raise ConfigError("tls.mode", f"must be 'on' or 'off', not {mode!r}")
    min_version = table.get("min_version", "1.2")
    if min_version not in ("1.2", "1.3"):
        raise ConfigError("tls.min_version", f"must be '1.2' or '1.3', not {min_version!r}")
    files = {k: path(_str(table, k, "tls."), f"tls.{k}") for k in ("cert", "key", "client_ca")}
    named = [k for k, v in files.items() if v is not None]
    if named and len(named) != 3:
        missing = next(k for k, v in files.items() if v is None)
        raise ConfigError(f"tls.{missing}", "cert, key and client_ca go together")
    for key, p in files.items():
        if p is not None and not p.is_file():
            raise ConfigError(f"tls.{key}", f"no such file: {p}")
    if mode == "off":
        for name, endpoint in listeners.items():
            if not _on_loopback(endpoint):
                raise ConfigError(
                    "tls.mode",
                    f"'off' is allowed only when every listener is on loopback; "
                    f"listen.{name} is {endpoint!r}",
                )
    return TLS(mode, files["cert"], files["key"], files["client_ca"], min_version)


def _bounded_int(table: dict, key: str, prefix: str, default: int, lo: int, hi: int) -> int:
    """An integer key within [lo, hi] (a bool is not an integer here)."""
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{prefix}{key}", f"must be an integer {lo}-{hi}, not {value!r}")
    return value


def _parse_store(raw: dict, path) -> Store:
    store = _table(raw, "store")
    _unknown(store, {"key_file", "url", "node", "lease_seconds"}, "store.")
    key_file = path(_str(store, "key_file", "store."), "store.key_file")
    if key_file is not None and key_file.is_dir():
        raise ConfigError("store.key_file", f"is a directory: {key_file}")
    url = _str(store, "url", "store.")
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("store.url", "must be a postgresql:// URL (omit it for SQLite)")
    node = _str(store, "node", "store.")
    if node is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", node):
        raise ConfigError("store.node", "must be 1-64 letters, digits, '.', '_' or '-'")
    lease = float(_num(store, "lease_seconds", "store.", 30.0, 2))
    if url is not None and key_file is None:
        raise ConfigError(
            "store.key_file",
            "is required with store.url: every node of a shared database needs the same data "
            "key file (its audit.key and iaq-control.key live beside it)",
        )
    return Store(key_file=key_file, url=url, node=node, lease_seconds=lease)


def _parse_admin(raw: dict) -> Admin:
    admin = _table(raw, "admin")
    _unknown(
        admin, {"hosts", "lockout_attempts", "lockout_minutes", "session_idle_minutes"}, "admin."
    )
    hosts = admin.get("hosts")
    if hosts is not None:
        if (
            not isinstance(hosts, list)
            or not hosts
            or len(hosts) > 64
            or not all(
                isinstance(h, str) and 0 < len(h) <= 255 and h.isascii() and " " not in h
                for h in hosts
            )
        ):
            raise ConfigError(
                "admin.hosts", f"must be a list of host or host:port strings, not {hosts!r}"
            )
        hosts = tuple(h.lower() for h in hosts)
    return Admin(
        hosts=hosts,
        lockout_attempts=int(_num(admin, "lockout_attempts", "admin.", 5, 1, int)),
        lockout_minutes=float(_num(admin, "lockout_minutes", "admin.", 10.0, 0.01)),
        session_idle_minutes=float(_num(admin, "session_idle_minutes", "admin.", 30.0, 0.01)),
    )


def _parse_retention(raw: dict) -> Retention:
    retention = _table(raw, "retention")
    _unknown(retention, {"payload_days", "audit_days", "check_hours"}, "retention.")
    audit_days = float(_num(retention, "audit_days", "retention.", 365.0, 1))
    return Retention(
        payload_days=float(_num(retention, "payload_days", "retention.", 90.0, 0.0001)),
        audit_days=audit_days,
        check_hours=float(_num(retention, "check_hours", "retention.", 24.0, 0.0001)),
    )


_LIMIT_MINIMA = {
    "max_connections": 1,
    "max_connections_per_peer": 1,
    "idle_timeout": 0.1,
    "command_timeout": 0.1,
    "min_data_rate": 0,
    "data_rate_window": 0.1,
    "max_message_seconds": 0.1,
    "max_body_size": 1024,
    "spool_threshold": 0,
    "max_attachments": 1,
    "mime_max_depth": 1,
    "mime_max_parts": 1,
    "max_pixels_per_transaction": 1,
    "max_work_seconds": 0.1,
    "max_work_memory": 0,
    "agency_share": 0.01,
}
# a worker holds about 150 MB once its libraries are loaded: a smaller limit stops every job
MIN_WORK_MEMORY = 256 * 1024**2


def _parse_limits(raw: dict) -> Limits:
    """``[limits]``: each key a number at or above its minimum (counts are integers)."""
    table = _table(raw, "limits")
    _unknown(table, set(_LIMIT_MINIMA), "limits.")
    values = {}
    for key, minimum in _LIMIT_MINIMA.items():
        default = getattr(Limits, key)
        kind = int if isinstance(default, int) else (int, float)
        value = _num(table, key, "limits.", default, minimum, kind)
        values[key] = type(default)(value)
    if values["agency_share"] > 1:
        raise ConfigError("limits.agency_share", "must be a fraction of the workers, at most 1")
    if 0 < values["max_work_memory"] < MIN_WORK_MEMORY:
        raise ConfigError(
            "limits.max_work_memory",
            f"must be 0 (no limit) or at least {MIN_WORK_MEMORY} bytes (a worker's libraries alone "
            "take about 150 MB)",
        )
    return Limits(**values)


_SCHEDULER = re.compile(
    r"(tls|tcp)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})):(\d{1,5})"
)


def _parse_scheduler(matcher: dict) -> str | None:
    """``[matcher] scheduler``: the Dask scheduler the gallery shards live behind
    (docs/scaling.md); needs the optional ``scale`` extra (dask[distributed]).  ``tls://``
    (mutual TLS, ``_parse_scheduler_tls``); ``tcp://`` carries probes and candidates in the
    clear without authentication, so only to a scheduler on this host's loopback."""
    value = _str(matcher, "scheduler", "matcher.")
    if value is None:
        return None
    m = _SCHEDULER.fullmatch(value)
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise ConfigError("matcher.scheduler", f"must be 'tls://HOST:PORT', not {value!r}")
    from gateway.matcher.shards import loopback_host  # the check the connection makes

    if m.group(1) == "tcp" and not loopback_host(m.group(2)):
        raise ConfigError(
            "matcher.scheduler",
            f"tcp:// is neither encrypted nor authenticated: only on loopback; use "
            f"'tls://{m.group(2)}:{m.group(3)}' (docs/scaling.md)",
        )
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise ConfigError(
            "matcher.scheduler", "needs Dask: pip install 'ebts-gateway[scale]' (dask[distributed])"
        )
    return value


def _parse_scheduler_tls(matcher: dict, data_dir: Path, path) -> DaskTLS | None:
    """``[matcher] scheduler_ca/_cert/_key``: the files of mutual TLS with a ``tls://``
    scheduler, each checked to exist (default: ``DATA/pki/dask/``)."""
    scheduler = matcher.get("scheduler")
    keys = ("scheduler_ca", "scheduler_cert", "scheduler_key")
    if not (isinstance(scheduler, str) and scheduler.startswith("tls://")):
        for key in keys:
            if key in matcher:
                raise ConfigError(f"matcher.{key}", "only with a tls:// matcher.scheduler")
        return None
    defaults = {
        "scheduler_ca": "ca.crt",
        "scheduler_cert": "gateway.crt",
        "scheduler_key": "gateway.key",
    }
    files = {}
    for key in keys:
        given = path(_str(matcher, key, "matcher."), f"matcher.{key}")
        p = given if given is not None else data_dir / "pki" / "dask" / defaults[key]
        if not p.is_file():
            hint = (
                ""
                if given is not None
                else " (make it: ebts-gateway pki issue gateway --role dask)"
            )
            raise ConfigError(f"matcher.{key}", f"no such file: {p}{hint}")
        files[key] = p
    return DaskTLS(files["scheduler_ca"], files["scheduler_cert"], files["scheduler_key"])


def _parse_alerts(raw: dict) -> Alerts:
    alerts = _table(raw, "alerts")
    _unknown(alerts, {"email", "max_wait", "refusal_rate", "period", "check_seconds"}, "alerts.")
    email = alerts.get("email", [])
    if isinstance(email, str):
        email = [email]
    if (
        not isinstance(email, list)
        or len(email) > 50
        or not all(
            isinstance(a, str)
            and 3 <= len(a) <= 254
            and a.count("@") == 1
            and a.isprintable()
            and " " not in a
            and "," not in a
            and not a.startswith("@")
            and not a.endswith("@")
            for a in email
        )
    ):
        raise ConfigError("alerts.email", f"must be a list of e-mail addresses, not {email!r}")
    return Alerts(
        email=tuple(email),
        max_wait=float(_num(alerts, "max_wait", "alerts.", 900.0, 1)),
        refusal_rate=int(_num(alerts, "refusal_rate", "alerts.", 10, 1, int)),
        period=float(_num(alerts, "period", "alerts.", 3600.0, 1)),
        check_seconds=float(_num(alerts, "check_seconds", "alerts.", 30.0, 0.1)),
    )


def default_raw() -> dict:
    """The embedded defaults as a TOML-shaped dict (a demo agency and jurisdiction)."""
    return {
        "agency": [
            {
                "ori": "NY0303000",
                "response_email": "ident-bureau@ny.example",
                "name": "Demo State Identification Bureau",
                # Its own ORIs and those of the shipped fixtures (fixtures/validation: WV...,
                # the demo files: NY..., ZZ...), so that the README's replay runs as it is.
                "submits_for": ["NY", "WV", "ZZ"],
            },
        ],
        "jurisdiction": [{"ori_prefix": "NY", "dhs_activated": "2009-10-27"}],
        "lesc": {"email": "lesc@ice.example"},
    }


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path`` (TOML) or, without one, the embedded defaults."""
    if path is None:
        return parse_config(default_raw())
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_config(raw, base=path.resolve().parent)
