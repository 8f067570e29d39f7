"""Knobs of the web app that are not service settings (limits; tests tighten them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WebOptions:
    """Abuse limits. Rate limits use the ``limits`` notation: ``"5/hour;20/day"``."""

    subscribe_per_ip: str = "20/hour;100/day"
    mails_per_address: str = "3/hour;6/day"
    posts_per_ip: str = "120/minute"
    max_body_bytes: int = 64 * 1024
    # The admin's subscriber CSV upload (the form around it may add up to 64 KiB).
    max_import_bytes: int = 2 * 1024 * 1024
    # Secure cookies when the public URL is https (None), or as given.
    secure_cookies: bool | None = None
