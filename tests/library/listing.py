"""Real papers of the shared listings as BibTeX entries, as a reference manager writes
them: the libraries the seeding tests give (CLI, sign-up, preferences page)."""

from __future__ import annotations

import json
from datetime import date

from tests.conftest import DAILY


def bibtex_entries(day: date, topic: str, count: int) -> list[str]:
    """The first ``count`` distinct papers of ``day``'s listing whose first category
    is ``topic``, one ``@article`` each (``paper0``, ``paper1``, ...)."""
    seen: set[str] = set()
    entries: list[str] = []
    for line in (DAILY / f"{day}.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["categories"][0] != topic or record["id"] in seen:
            continue
        seen.add(record["id"])
        authors = " and ".join(record["authors"][:4])
        entries.append(
            f"@article{{paper{len(entries)},\n  title = {{{record['title']}}},\n"
            f"  author = {{{authors}}},\n  eprint = {{{record['id']}}},\n"
            "  archivePrefix = {arXiv},\n}\n"
        )
        if len(entries) == count:
            break
    return entries
