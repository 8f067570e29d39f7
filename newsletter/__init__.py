"""Self-hosted, personalised research-paper newsletter."""

from __future__ import annotations

__version__ = "0.1.0"
