"""CI runs what the README says: its test command (ruff, mypy and pytest, as steps of
their own, so the fast loop ``pytest -m "not slow"`` lints nothing) is in ``.ci/run``."""

from __future__ import annotations

from tests.conftest import REPO


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = next(
        line.strip() for line in readme.splitlines() if line.strip().endswith("-m pytest")
    )
    assert command in ci
    assert "pip install . && .venv/bin/newsletter demo" in readme
