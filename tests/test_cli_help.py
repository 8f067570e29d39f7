"""Every command documents itself with examples; every exit status means one thing."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from newsletter.cli import ExitCode, app
from tests.conftest import TEST_SECRET, child_environment

EXAMPLE_LINE = re.compile(r"^\s+newsletter( |$)", re.MULTILINE)


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every group and command of the tree, as the words that invoke it."""
    root = typer.main.get_command(app)

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))

    yield from walk(root, ())


PATHS = list(command_paths())


def test_the_tree_has_every_command() -> None:
    names = {" ".join(path) for path in PATHS}
    expected = {
        "db upgrade", "db downgrade", "db current", "ingest", "subscribers add",
        "subscribers import", "subscribers list", "topics", "plan", "send", "deliver",
        "bounces", "serve", "run", "test-send", "preview", "admin create-user", "recommend",
        "recommender refit", "demo", "status", "admin set-password",
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "newsletter")
def test_help_has_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.stdout
    examples = result.stdout.split("Examples:", 1)[1]
    assert EXAMPLE_LINE.search(examples), examples


def test_root_help_documents_every_exit_status() -> None:
    result = CliRunner().invoke(app, ["--help"])
    for code in ExitCode:
        assert re.search(rf"^\s+{int(code)}\s+\S", result.stdout, re.MULTILINE), code.name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def newsletter(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real console script, with a clean NEWSLETTER_* environment."""
    base = child_environment()
    base |= {
        "NEWSLETTER_SECRET_KEY": TEST_SECRET,
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{cwd / 'status.db'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        capture_output=True,
        text=True,
        env=base | env,
        cwd=cwd,
        timeout=600,  # a hang guard, not a timing assertion (loaded CI machines)
    )


def test_status_exit_codes(tmp_path: Path) -> None:
    unmigrated = newsletter(tmp_path, "status", "--json")
    assert unmigrated.returncode == ExitCode.DATABASE
    assert unmigrated.stdout == ""
    assert "run: newsletter db upgrade" in unmigrated.stderr

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    unreachable = newsletter(tmp_path, "status", NEWSLETTER_DATABASE_URL=url)
    assert unreachable.returncode == ExitCode.DATABASE
    assert unreachable.stderr.startswith("error: cannot connect to database")

    misconfigured = newsletter(tmp_path, "status", NEWSLETTER_SMTP_TLS="maybe")
    assert misconfigured.returncode == ExitCode.CONFIG
    assert "NEWSLETTER_SMTP_TLS" in misconfigured.stderr

    bad_date = newsletter(tmp_path, "status", "--edition", "2026-13-01")
    assert bad_date.returncode == ExitCode.USAGE

    assert newsletter(tmp_path, "db", "upgrade").returncode == ExitCode.OK
    never = newsletter(tmp_path, "status", "--edition", "2026-01-01")
    assert never.returncode == ExitCode.FAILURE
    assert never.stderr == "error: edition 2026-01-01 has not been planned\n"
    fine = newsletter(tmp_path, "status")
    assert fine.returncode == ExitCode.OK, fine.stderr
    assert "due now" in fine.stdout
    assert "Traceback" not in fine.stderr + unreachable.stderr + unmigrated.stderr
