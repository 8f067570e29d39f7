"""Locate the run-time data directories (templates, config, alembic).

In a source checkout or an editable install they sit at the top of the
repository; a wheel carries copies under ``newsletter/_data`` (see
pyproject.toml). Looking in both places lets ``pip install .`` and a plain
checkout behave the same.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE_DIR / "_data", _PACKAGE_DIR.parent)


@cache
def resource_path(name: str) -> Path:
    """Return the path of a top-level resource (``templates``, ``config``, ``alembic``...)."""
    for base in _CANDIDATES:
        path = base / name
        if path.exists():
            return path
    searched = ", ".join(str(base / name) for base in _CANDIDATES)
    raise FileNotFoundError(f"resource {name!r} not found (looked in {searched})")


def demo_feed_dir() -> Path:
    """The shipped sample of real arXiv listings used by ``newsletter demo``."""
    return _PACKAGE_DIR / "demo_feed"
