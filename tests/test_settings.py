from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.db import make_engine, safe_url
from newsletter.errors import ConfigError, DatabaseUnavailable
from newsletter.planning.latest import plan_options
from newsletter.settings import DEMO_SECRET, load_settings
from tests.conftest import TEST_SECRET


def test_defaults_come_from_the_shipped_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", TEST_SECRET)
    settings = load_settings()
    assert settings.database_url == "sqlite:///newsletter.db"
    assert settings.smtp_tls == "none"
    assert settings.sender_address == "newsletter@example.org"
    assert settings.effective_list_id == "newsletter.localhost"
    # The hybrid score has its own minimum (benchmarks/calibrate_min_score.py).
    assert (settings.min_score, settings.min_score_semantic) == (0.02, 0.06)
    options = plan_options(settings)
    assert (options.min_score, options.min_score_semantic) == (0.02, 0.06)


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("true", True), (None, None)])
def test_every_planner_gets_the_semantic_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool | None
) -> None:
    # The scheduler and test sends plan with plan_options, `newsletter plan` with the
    # service: the same options, so semantic = false turns the hybrid off for all.
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", TEST_SECRET)
    monkeypatch.delenv("NEWSLETTER_SEMANTIC", raising=False)
    if value is not None:
        monkeypatch.setenv("NEWSLETTER_SEMANTIC", value)
    assert plan_options(load_settings()).semantic is expected


def test_environment_overrides_user_toml_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = tmp_path / "user.toml"
    user.write_text('smtp_host = "relay.example.org"\nsmtp_port = 2525\nmax_papers = 5\n')
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", "587")
    monkeypatch.setenv("NEWSLETTER_SMTP_TLS", "starttls")
    monkeypatch.setenv("NEWSLETTER_FROM", "Papers <papers@example.com>")
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", "https://papers.example.com/")
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", "bot")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql://u@db/news")
    settings = load_settings(user)
    assert settings.smtp_host == "relay.example.org"
    assert settings.smtp_port == 587
    assert settings.smtp_tls == "starttls"
    assert settings.max_papers == 5
    assert settings.sender_address == "papers@example.com"
    assert settings.public_url == "https://papers.example.com"
    assert settings.smtp_username == "bot"
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.database_url == "postgresql+psycopg://u@db/news"


def test_config_file_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "n.toml"
    user.write_text(f'secret_key = "{TEST_SECRET}"\nsmtp_host = "mx.example.net"\n')
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(user))
    assert load_settings().smtp_host == "mx.example.net"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("NEWSLETTER_SMTP_PORT", "70000", "NEWSLETTER_SMTP_PORT"),
        ("NEWSLETTER_SMTP_PORT", "twenty-five", "NEWSLETTER_SMTP_PORT"),
        ("NEWSLETTER_SMTP_TLS", "ssl", "NEWSLETTER_SMTP_TLS"),
        ("NEWSLETTER_FROM", "not an address", "NEWSLETTER_FROM"),
        ("NEWSLETTER_PUBLIC_URL", "papers.example.org", "NEWSLETTER_PUBLIC_URL"),
        ("NEWSLETTER_DATABASE_URL", "mysql://x/y", "NEWSLETTER_DATABASE_URL"),
    ],
)
def test_invalid_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_unknown_key_in_user_toml_is_refused(tmp_path: Path) -> None:
    user = tmp_path / "typo.toml"
    user.write_text('smtp_hots = "x"\n')
    with pytest.raises(ConfigError, match="smtp_hots"):
        load_settings(user, allow_placeholder_secret=True)


def test_malformed_toml_is_a_clear_error(tmp_path: Path) -> None:
    user = tmp_path / "bad.toml"
    user.write_text("smtp_host = \n")
    with pytest.raises(ConfigError, match="configuration"):
        load_settings(user, allow_placeholder_secret=True)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize("secret", ["", "change-me", DEMO_SECRET, "short-secret"])
def test_placeholder_or_short_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", secret)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        load_settings()


def test_demo_may_use_the_placeholder_secret() -> None:
    settings = load_settings(overrides={"secret_key": DEMO_SECRET}, allow_placeholder_secret=True)
    assert settings.secret_key.get_secret_value() == DEMO_SECRET


def test_database_that_does_not_connect_is_a_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect to database") as info:
        make_engine("postgresql+psycopg://nobody:pw@127.0.0.1:1/none?connect_timeout=2")
    assert "pw" not in str(info.value)


def test_sqlite_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        make_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")


def test_safe_url_hides_password() -> None:
    assert "secret" not in safe_url("postgresql+psycopg://user:secret@host/db")


def test_service_addresses_and_the_public_url_are_kept_in_their_ascii_form() -> None:
    # Every message carries them (From, envelope, List-Unsubscribe, links): an
    # internationalised domain in any of them would otherwise make every message fail.
    from tests.conftest import make_settings

    settings = make_settings(
        "sqlite://",
        from_address="Nachrichten <news@bücher.de>",
        public_url="https://bücher.de:8443/papers/",
        return_path="bounces@Bücher.de",
        unsubscribe_mailto="abmelden@bücher.de",
    )
    assert settings.sender == "Nachrichten <news@xn--bcher-kva.de>"
    assert settings.sender_address == "news@xn--bcher-kva.de"
    assert settings.public_url == "https://xn--bcher-kva.de:8443/papers"
    assert settings.return_path == "bounces@xn--bcher-kva.de"
    assert settings.unsubscribe_mailto == "abmelden@xn--bcher-kva.de"
    plain = make_settings("sqlite://", from_address="Papers <news@example.org>")
    assert plain.sender == "Papers <news@example.org>"  # ASCII values are left as they are


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_address", "Nachrichten <nächrichten@example.org>"),
        ("return_path", "bounces@bü_cher.de"),
        ("unsubscribe_mailto", "ünsubscribe@example.org"),
        ("public_url", "https://example.org/pfad/ü"),
    ],
)
def test_service_addresses_that_cannot_go_out_are_refused(field: str, value: str) -> None:
    from tests.conftest import make_settings

    with pytest.raises(ConfigError, match=field if field != "from_address" else "NEWSLETTER_FROM"):
        make_settings("sqlite://", **{field: value})
