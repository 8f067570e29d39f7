"""Domain exceptions: one base class, one subclass per kind of failure.

The CLI (and later the web layer) maps these to readable messages in one place;
anything that is not a ``NewsletterError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base class of every error this service reports to a person."""


class ConfigError(NewsletterError):
    """A setting is missing or invalid; the message names the setting."""


class DatabaseUnavailable(NewsletterError):
    """The database URL does not connect."""


class InvalidAddress(NewsletterError):
    """An email address failed validation."""


class UnknownTopic(NewsletterError):
    """A topic id is not in the catalogue."""


class TemplateError(NewsletterError):
    """An email template does not compile or does not render."""


class SmtpUnavailable(NewsletterError):
    """The SMTP server cannot be reached or refuses the session."""


class EditionError(NewsletterError):
    """An edition cannot be planned or sent as asked."""
