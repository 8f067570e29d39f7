"""Every ``newsletter`` command; importing this package registers them on ``app``."""

from __future__ import annotations

from newsletter.cli.commands import (  # noqa: F401  (imported for their registrations)
    database,
    editions,
    library,
    papers,
    people,
    processes,
    recommend,
    status,
)
