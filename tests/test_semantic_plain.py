"""The plain install never imports torch: ingest, plan and recommend with TF-IDF alone.

The run happens in a fresh interpreter with an import blocker in front of every
finder, so torch, transformers and sentence-transformers look uninstalled even
when the semantic extra is (as on CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import DAILY, TEST_SECRET

SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, runpy, sys
    from datetime import date
    from pathlib import Path

    BLOCKED = ("torch", "transformers", "sentence_transformers")

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Blocker())

    from newsletter.papers.catalogue import load_catalogue
    from newsletter.db import make_engine
    from newsletter.migrations import upgrade
    from newsletter.service import Service
    from newsletter.settings import load_settings
    from newsletter.subscribers.roster import build_input, upsert_subscriber

    tmp, daily, papers, profiles, secret = sys.argv[1:6]
    url = f"sqlite:///{tmp}/plain.db"
    upgrade(make_engine(url))
    settings = load_settings(overrides={"database_url": url, "secret_key": secret})
    service = Service.open(settings)
    assert service.semantic is False
    service.sync_topics()
    day = date(2026, 5, 27)
    ingested = service.ingest(Path(daily), today=day)
    with service.sessions.begin() as session:
        upsert_subscriber(
            session, build_input(load_catalogue(), email="cv@example.org", topics=["cs.CV"])
        )
    planned = service.plan(day)
    service.close()

    sys.argv = ["newsletter", "recommend", "--papers", papers, "--profiles", profiles,
                "--top", "3"]
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO(), write_through=True)) as w:
        try:
            runpy.run_module("newsletter", run_name="__main__")
        except SystemExit as exc:
            code = exc.code or 0
        w.seek(0)
        output = w.buffer.getvalue().decode()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"ingested": ingested.new, "planned": planned.planned,
                      "code": code, "output": output, "heavy": heavy}))
    """
)


def test_plain_path_imports_no_torch(tmp_path: Path) -> None:
    records = [json.loads(line) for line in (DAILY / "2026-05-27.jsonl").read_text().splitlines()]
    records = records[:60]
    papers = tmp_path / "papers.jsonl"
    papers.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    profiles = tmp_path / "profiles.jsonl"
    profiles.write_text(json.dumps({"id": "cv", "topics": ["cs.CV"]}) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path),
            str(DAILY / "2026-05-27.jsonl"),
            str(papers),
            str(profiles),
            TEST_SECRET,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # The setting left at its default: "semantic when the extra is installed".
        env={k: v for k, v in os.environ.items() if k != "NEWSLETTER_SEMANTIC"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["ingested"] > 100
    assert report["planned"] == 1
    assert report["code"] == 0
    lines = [json.loads(line) for line in report["output"].splitlines()]
    assert [line["id"] for line in lines] == ["cv"]
    assert len(lines[0]["papers"]) == 3
    assert all(set(pick) == {"id", "score", "why"} for pick in lines[0]["papers"])
    # TF-IDF explains every pick with words of the topic.
    assert all(pick["why"] for pick in lines[0]["papers"])
