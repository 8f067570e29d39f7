"""recommender/ is a pure library: it imports nothing of the service and does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import recommender

FORBIDDEN = {"newsletter", "sqlalchemy", "aiosmtplib", "smtplib", "socket", "requests", "httpx"}


def test_recommender_imports_no_service_code() -> None:
    package = Path(recommender.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 4
    for module in modules:
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
        assert "open(" not in module.read_text(), f"{module.name} does file I/O"
