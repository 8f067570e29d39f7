"""One validated ``Settings`` object, built once at the edge and passed in.

Sources, lowest priority first: the shipped ``config/newsletter.toml`` (documented
defaults), an optional user TOML (``--config PATH`` or ``NEWSLETTER_CONFIG``),
then ``NEWSLETTER_*`` environment variables. The environment variable names are a
contract other tools rely on; see config/newsletter.toml for every setting.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from contextvars import ContextVar
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import idna
from email_validator import EmailNotValidError, validate_email
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from newsletter.errors import ConfigError
from newsletter.resources import resource_path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ascii_domain(domain: str) -> str:
    """A domain in its ASCII form (IDNA 2008 with the UTS 46 mapping): the one home of
    that rule, for the service's own addresses here and subscribers' in mail.addresses."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{domain!r} is not a valid domain name: {exc}") from None


@functools.lru_cache(maxsize=16)
def _bare_address(sender: str) -> str:
    # Cached: the envelope sender of every message is derived from it.
    return parseaddr(sender)[1]


def wire_address(address: str) -> str:
    """A service address (sender, return path, mailto) as every message carries it: the
    domain in ASCII; a local part that is not ASCII is refused, since every message
    would then need SMTPUTF8 and a relay without it would refuse them all."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{address!r} is not an address such as news@example.org")
    if not local.isascii():
        raise ValueError(f"{address!r}: use an address that is ASCII before the @")
    return address if domain.isascii() else f"{local}@{ascii_domain(domain)}"


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"127.0.0.1, 10.0.0.0/8"`` as networks; raises ``ValueError`` naming a bad entry."""
    networks: list[Network] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)"
            ) from None
    return tuple(networks)


ENV_PREFIX = "NEWSLETTER_"
CONFIG_ENV = "NEWSLETTER_CONFIG"
DEMO_SECRET = "demo-only-secret-never-use-in-production"  # noqa: S105 - refused outside demo
_PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "please-change", DEMO_SECRET}
_MIN_SECRET_LENGTH = 32

# The TOML files of the settings being built; a ContextVar rather than a class
# attribute so that building settings never leaks state between callers.
_toml_files: ContextVar[tuple[Path, ...]] = ContextVar("_toml_files", default=())


class Settings(BaseSettings):
    """Every setting of the service, validated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        populate_by_name=True,
        frozen=True,
    )

    database_url: str = "sqlite:///newsletter.db"

    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_connections: int = Field(default=4, ge=1, le=64)

    sender: str = Field(
        default="Paper Newsletter <newsletter@example.org>",
        validation_alias=AliasChoices("NEWSLETTER_FROM", "from_address"),
    )
    public_url: str = "http://localhost:8000"
    secret_key: SecretStr = SecretStr("")
    list_id: str = ""
    contact_line: str = Field(default="", max_length=300)

    topics_file: Path | None = None
    templates_dir: Path | None = None
    max_papers: int = Field(default=10, ge=1, le=100)
    min_score: float = Field(default=0.02, ge=0.0, lt=1.0)
    corpus_limit: int = Field(default=50_000, ge=10)
    model_dir: Path | None = None
    refit_growth: float = Field(default=0.2, gt=0.0)
    diversity: float = Field(default=0.8, ge=0.0, le=1.0)
    feedback_liked: float = Field(default=1.0, ge=0.0)
    feedback_disliked: float = Field(default=0.5, ge=0.0)
    feedback_half_life_days: float = Field(default=120.0, gt=0.0)
    # Semantic ranking (the optional extra): None uses it when the extra is installed.
    semantic: bool | None = None
    # min_score for the hybrid TF-IDF + embedding score, used when semantic ranking is on
    # (benchmarks/calibrate_min_score.py).
    min_score_semantic: float = Field(default=0.06, ge=0.0, lt=1.0)
    send_batch_size: int = Field(default=500, ge=1, le=10_000)
    lease_seconds: int = Field(default=600, ge=1)
    deliver_workers: int = Field(default=1, ge=1, le=64)
    plan_workers: int = Field(default=1, ge=1, le=64)
    log_json: bool = False
    # Where the web pages' rate limits count (a ``limits`` storage URI): memory:// per
    # process; redis://HOST:PORT shared by every web process (see newsletter.web.ratelimit).
    rate_limit_storage: str = "memory://"
    # Bearer token /metrics asks for; unset, /metrics answers loopback clients only.
    metrics_token: SecretStr | None = None
    # Addresses / networks of the reverse proxies in front of the web app, whose
    # X-Forwarded-For is believed (comma-separated; "" when clients connect directly).
    trusted_proxies: str = "127.0.0.1, ::1"
    smtp_message_timeout: float = Field(default=120.0, gt=0)
    smtp_slowdown_seconds: float = Field(default=1.0, gt=0)
    rate_per_second: float | None = Field(default=None, gt=0)
    rate_per_hour: int | None = Field(default=None, ge=1)
    max_attempts: int = Field(default=8, ge=1, le=50)
    retry_base_seconds: float = Field(default=300.0, gt=0)
    bounce_limit: int = Field(default=1, ge=1)
    return_path: str | None = None
    verp: bool = False
    unsubscribe_mailto: str | None = None
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None
    dkim_algorithm: Literal["rsa-sha256", "ed25519-sha256"] = "rsa-sha256"
    bounce_mailbox: Literal["none", "maildir", "imap", "pop3"] = "none"
    bounce_maildir: Path | None = None
    bounce_host: str | None = None
    bounce_port: int | None = Field(default=None, ge=1, le=65535)
    bounce_tls: bool = True
    bounce_username: str | None = None
    bounce_password: SecretStr | None = None
    bounce_folder: str = "INBOX"
    # Paper sources (newsletter ingest --source NAME): one [sources.NAME] table each.
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source_contact: str | None = None
    source_timeout: float = Field(default=30.0, gt=0)
    source_retries: int = Field(default=4, ge=0, le=20)
    source_backoff_seconds: float = Field(default=2.0, ge=0)
    source_max_wait_seconds: float = Field(default=300.0, gt=0)
    # Scheduler (newsletter run): crontab expressions in UTC.
    ingest_cron: str = "10 * * * *"
    plan_cron: str = "*/15 * * * *"
    plan_lookahead_minutes: int = Field(default=30, ge=1, le=1440)
    deliver_interval_seconds: float = Field(default=60.0, gt=0)
    refit_cron: str = "30 3 * * *"
    purge_cron: str = "45 * * * *"
    scheduler_misfire_grace_seconds: int = Field(default=900, ge=1)
    scheduler_standby_seconds: float = Field(default=5.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL such as sqlite:///newsletter.db")
        scheme = value.split("://", 1)[0]
        if scheme == "postgresql" or scheme == "postgres":
            # psycopg 3 is the driver we ship; the bare scheme would pick psycopg2.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        return value

    @field_validator("ingest_cron", "plan_cron", "refit_cron", "purge_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(
                f"not a crontab expression (minute hour day month weekday): {exc}"
            ) from None
        return value

    @field_validator("sender")
    @classmethod
    def _check_sender(cls, value: str) -> str:
        name, address = parseaddr(value)
        if not address:
            raise ValueError("must be an address, optionally with a name: 'Name <a@b.org>'")
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(f"{address!r} is not a valid address: {exc}") from exc
        ascii_address = wire_address(address)
        if ascii_address == address:
            return value
        return f"{name} <{ascii_address}>" if name else ascii_address

    @field_validator("return_path", "unsubscribe_mailto")
    @classmethod
    def _check_service_address(cls, value: str | None) -> str | None:
        # Whether it is an address at all is checked where it is used (verp, bounces),
        # which names the setting; here only its wire form.
        return wire_address(value.strip()) if value and "@" in value else value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://papers.example.org")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        if not parts.netloc.isascii():
            # Every link of every issue starts with it, in headers too: the ASCII form.
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
            netloc = ascii_domain(host) + port
            value = parts._replace(netloc=netloc).geturl()
        if not value.isascii():
            raise ValueError("must be ASCII after the host (percent-encode the path)")
        return value.rstrip("/")

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        """``trusted_proxies`` as networks."""
        return parse_networks(self.trusted_proxies)

    @property
    def sender_address(self) -> str:
        """The bare address of ``sender`` (the SMTP envelope sender)."""
        return _bare_address(self.sender)

    @property
    def effective_list_id(self) -> str:
        """``list_id`` or one derived from the public URL's host (RFC 2919)."""
        if self.list_id:
            return self.list_id
        host = urlsplit(self.public_url).hostname or "localhost"
        return f"newsletter.{host}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Priority: explicit overrides, then environment, then the TOML files."""
        toml = TomlConfigSettingsSource(settings_cls, toml_file=list(_toml_files.get()))
        return (init_settings, env_settings, toml)


def _setting_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    if field in {"sender", "from_address", "NEWSLETTER_FROM"}:
        return "from_address (NEWSLETTER_FROM)"
    field = field.removeprefix(ENV_PREFIX.lower()).removeprefix(ENV_PREFIX)
    return f"{field} ({ENV_PREFIX}{field.upper()})"


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's report into lines that name each offending setting."""
    lines = []
    for error in exc.errors():
        name = _setting_name(tuple(error["loc"]))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling against config/newsletter.toml)"
        lines.append(f"invalid setting {name}: {message}")
    return "\n".join(lines)


def load_settings(
    config_file: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    allow_placeholder_secret: bool = False,
) -> Settings:
    """Build and validate the settings; raise ``ConfigError`` naming the bad setting."""
    files = [resource_path("config") / "newsletter.toml"]
    user_file = config_file or (
        Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None
    )
    if user_file is not None:
        if not user_file.is_file():
            raise ConfigError(f"config file {user_file} does not exist")
        files.append(user_file)
    token = _toml_files.set(tuple(files))
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except ValueError as exc:  # a TOML syntax error surfaces as a ValueError subclass
        raise ConfigError(f"cannot read the configuration: {exc}") from None
    finally:
        _toml_files.reset(token)
    if not allow_placeholder_secret:
        check_secret(settings)
    return settings


def check_secret(settings: Settings) -> None:
    """Refuse an unset, placeholder or short secret key (it signs every link in every issue)."""
    secret = settings.secret_key.get_secret_value()
    if secret in _PLACEHOLDER_SECRETS:
        raise ConfigError(
            "invalid setting secret_key (NEWSLETTER_SECRET_KEY): not set or a placeholder; "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    if len(secret) < _MIN_SECRET_LENGTH:
        raise ConfigError(
            f"invalid setting secret_key (NEWSLETTER_SECRET_KEY): must be at least "
            f"{_MIN_SECRET_LENGTH} characters"
        )
