"""The progress hook that long library functions accept (the CLI draws it as a bar)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

# Called as ``progress(advance, total)``: ``advance`` more items are done out of
# ``total`` (None while the total is not known yet). It must not raise.
ProgressHook: TypeAlias = Callable[[int, int | None], None]
