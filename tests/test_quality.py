"""Lint and types are part of the test suite, so CI runs them with everything else."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=600
    )


def test_ruff_check() -> None:
    result = _tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _tool("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = next(
        line.strip() for line in readme.splitlines() if line.strip().endswith("-m pytest")
    )
    assert command in ci
    assert "pip install . && .venv/bin/newsletter demo" in readme
