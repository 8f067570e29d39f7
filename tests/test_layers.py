"""Imports flow one way: the pipeline's packages only import the steps before them.

Every import counts, at module level or inside a function (a lazy import is still a
dependency), and under ``TYPE_CHECKING`` too. The rules:

- ``recommender/`` is pure: it imports nothing of ``newsletter``;
- only the web layer and the CLI (and ``python -m newsletter``) import ``newsletter.web``
  or ``newsletter.cli``; the web layer does not import the CLI;
- the pipeline papers -> planning -> mail -> delivery -> bounces / scheduler: no step
  imports a later one; subscribers sit beside it below delivery; bounces and the
  scheduler do not import each other.

The shared basics at the top of ``newsletter`` (settings, db, models, errors, ...) are
not constrained here beyond the first two rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# For each package of newsletter/, the packages it must not import.
LATER = {
    "papers": {"planning", "mail", "subscribers", "delivery", "bounces", "scheduler"},
    "planning": {"mail", "subscribers", "delivery", "bounces", "scheduler"},
    "mail": {"subscribers", "delivery", "bounces", "scheduler"},
    "subscribers": {"delivery", "bounces", "scheduler"},
    "delivery": {"bounces", "scheduler"},
    "bounces": {"scheduler"},
    "scheduler": {"bounces"},
}
UPPER = {"web", "cli"}
# ``python -m newsletter`` runs the CLI.
CLI_ENTRY = "newsletter.__main__"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (``from a import b`` also yields ``a.b``)."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def step(module: str) -> str:
    """The package (or top-level module) of ``newsletter`` a module is in, else ""."""
    parts = module.split(".")
    return parts[1] if parts[0] == "newsletter" and len(parts) > 1 else ""


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_rules_see_the_packages() -> None:
    """A renamed package would make its rules vacuous: every named one exists."""
    for name in {*LATER, *UPPER}:
        assert (ROOT / "newsletter" / name / "__init__.py").is_file(), name


@pytest.mark.parametrize("path", sources("recommender"), ids=module_name)
def test_the_recommender_imports_nothing_of_newsletter(path: Path) -> None:
    bad = [m for m in imported(path) if m == "newsletter" or m.startswith("newsletter.")]
    assert bad == []


@pytest.mark.parametrize("path", sources("newsletter"), ids=module_name)
def test_imports_flow_one_way(path: Path) -> None:
    module = module_name(path)
    own = step(module)
    targets = {step(m) for m in imported(path)}
    if own == "web":
        forbidden = {"cli"}
    elif own == "cli" or module == CLI_ENTRY:
        forbidden = set()
    else:
        forbidden = UPPER | LATER.get(own, set())
    assert sorted(targets & forbidden) == []
