"""Languages of the emails: Babel message catalogues, per-locale dates, Jinja callables.

The templates hold the English strings as ``{{ _("...") }}`` / ``ngettext(...)``
calls; ``newsletter/locale/<lang>/LC_MESSAGES/messages.po`` translates them (the
compiled ``.mo`` files are committed beside them, so a wheel needs no build step;
tests/test_email_design.py checks that they match their ``.po``). The callables
are passed in each render's context rather than installed into the Jinja
environment, so one compiled template serves every language and threads never
swap translations under each other. Everything is loaded once per locale and cached:
nothing is read from disk per message.
"""

from __future__ import annotations

import functools
import gettext as gettext_module
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from babel.dates import format_date
from babel.support import Translations
from markupsafe import Markup

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
DEFAULT_LOCALE = "en"
# English is the source language of the templates; every other one has a catalogue.
LOCALES: dict[str, str] = {"en": "English", "de": "Deutsch"}

# English keeps the label the issues have always had ("Wednesday 27 May 2026");
# other languages use their own full date format ("Mittwoch, 27. Mai 2026").
_DATE_PATTERNS = {"en": "EEEE d MMMM y"}


def normalise_locale(value: str | None) -> str:
    """A supported locale for ``value`` ('de', 'de_DE', 'de-AT' → 'de'); English otherwise."""
    if not value:
        return DEFAULT_LOCALE
    language = value.replace("-", "_").split("_", 1)[0].strip().lower()
    return language if language in LOCALES else DEFAULT_LOCALE


@functools.cache
def translations(locale: str) -> gettext_module.NullTranslations:
    """The catalogue of ``locale``, loaded once per process (English: the identity)."""
    locale = normalise_locale(locale)
    if locale == DEFAULT_LOCALE:
        return gettext_module.NullTranslations()
    return Translations.load(str(LOCALE_DIR), [locale], DOMAIN)


def mark(message: str) -> str:
    """Mark a module-level string for extraction (translated later, where it is used)."""
    return message


def gettext(locale: str, message: str) -> str:
    """``message`` in ``locale``."""
    return translations(locale).gettext(message)


def ngettext(locale: str, singular: str, plural: str, count: int) -> str:
    """The form of ``singular``/``plural`` for ``count`` in ``locale``."""
    return translations(locale).ngettext(singular, plural, count)


@functools.lru_cache(maxsize=512)
def format_day(day: date, locale: str) -> str:
    """``day`` written out in ``locale`` (cached: an edition has one date)."""
    locale = normalise_locale(locale)
    return format_date(day, _DATE_PATTERNS.get(locale, "full"), locale=locale)


@functools.cache
def jinja_callables(locale: str, *, autoescape: bool) -> dict[str, Callable[..., str]]:
    """``_``, ``gettext`` and ``ngettext`` for templates, bound to ``locale``.

    New-style gettext (as Jinja's i18n extension has it): placeholders are
    ``%(name)s`` filled from keyword arguments, ``ngettext`` gets ``num``. For an
    autoescaping (HTML) template the translation, from our own catalogue, is trusted
    markup and the arguments are escaped by ``Markup.__mod__``; for text templates
    both stay plain. Plain functions, one set per locale and kind, because a
    ``pass_context`` callable costs several times more per call on the hot path.
    """
    catalogue = translations(locale)
    if autoescape:

        def _gettext(message: str, **variables: Any) -> str:
            trusted = Markup(catalogue.gettext(message))  # noqa: S704
            return trusted % variables if variables else trusted

        def _ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
            variables.setdefault("num", num)
            return Markup(catalogue.ngettext(singular, plural, num)) % variables  # noqa: S704

    else:

        def _gettext(message: str, **variables: Any) -> str:
            text = catalogue.gettext(message)
            return text % variables if variables else text

        def _ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
            variables.setdefault("num", num)
            return catalogue.ngettext(singular, plural, num) % variables

    return {"_": _gettext, "gettext": _gettext, "ngettext": _ngettext}
