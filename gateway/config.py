"""Gateway configuration: TOML with embedded defaults, checked key by key.

``load_config(path)`` returns a :class:`Config`; any problem raises :class:`ConfigError` naming
the key (``listen.smtp``, ``agency[2].ori`` ...).  Without a file the embedded defaults run the
whole gateway on one machine: loopback listeners, SQLite under ``./ebts-data``, a demo gallery.
See ``examples/gateway.toml`` for every key with comments.
"""

from __future__ import annotations

import datetime as dt
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


@dataclass(frozen=True)
class Jurisdiction:
    ori_prefix: str
    dhs_activated: dt.date | None  # None: not activated


@dataclass(frozen=True)
class Config:
    data_dir: Path
    listen_smtp: str = "tcp:2525:interface=127.0.0.1"
    listen_soap: str = "tcp:8080:interface=127.0.0.1"
    listen_admin: str = "tcp:8081:interface=127.0.0.1"
    smtp_domain: str = "ebts-gateway.localhost"
    smtp_max_size: int = 64 * 1024 * 1024
    smtp_tls_cert: Path | None = None
    smtp_tls_key: Path | None = None
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
    raw: dict = field(default_factory=dict, repr=False)

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
    _unknown(smtp, {"domain", "max_message_size", "tls_cert", "tls_key"}, "smtp.")
    outbound = _table(raw, "outbound")
    _unknown(
        outbound,
        {"smtp_relay", "from_address", "retry_initial", "retry_max", "max_attempts"},
        "outbound.",
    )
    gateway = _table(raw, "gateway")
    _unknown(gateway, {"ori"}, "gateway.")
    validation = _table(raw, "validation")
    _unknown(validation, {"profile"}, "validation.")
    lesc = _table(raw, "lesc")
    _unknown(lesc, {"email", "soap", "ori"}, "lesc.")
    gallery = _table(raw, "gallery")
    _unknown(gallery, {"fbi", "dhs", "demo", "demo_subjects"}, "gallery.")
    matcher = _table(raw, "matcher")
    _unknown(matcher, {"threshold", "search_positions"}, "matcher.")
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

    tls_cert = path(_str(smtp, "tls_cert", "smtp."), "smtp.tls_cert")
    tls_key = path(_str(smtp, "tls_key", "smtp."), "smtp.tls_key")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError(
            "smtp.tls_key" if tls_key is None else "smtp.tls_cert",
            "STARTTLS needs both tls_cert and tls_key",
        )
    for key, p in (("smtp.tls_cert", tls_cert), ("smtp.tls_key", tls_key)):
        if p is not None and not p.is_file():
            raise ConfigError(key, f"no such file: {p}")

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
        _unknown(item, {"ori", "response_email", "response_soap", "name"}, prefix)
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
        agencies.append(Agency(ori, email, soap, _str(item, "name", prefix)))

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
    from gateway.routing.offenses import OffenseConfigError, offense_table_from_config

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
    return Config(
        data_dir=data_dir,
        listen_smtp=_endpoint(_str(listen, "smtp", "listen.", Config.listen_smtp), "listen.smtp"),
        listen_soap=_endpoint(_str(listen, "soap", "listen.", Config.listen_soap), "listen.soap"),
        listen_admin=_endpoint(
            _str(listen, "admin", "listen.", Config.listen_admin), "listen.admin"
        ),
        smtp_domain=_str(smtp, "domain", "smtp.", Config.smtp_domain),
        smtp_max_size=int(_num(smtp, "max_message_size", "smtp.", Config.smtp_max_size, 1024)),
        smtp_tls_cert=tls_cert,
        smtp_tls_key=tls_key,
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
        raw=raw,
    )


def default_raw() -> dict:
    """The embedded defaults as a TOML-shaped dict (a demo agency and jurisdiction)."""
    return {
        "agency": [
            {
                "ori": "NY0303000",
                "response_email": "ident-bureau@ny.example",
                "name": "Demo State Identification Bureau",
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
