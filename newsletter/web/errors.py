"""Errors the web layer turns into pages, in one place (see ``app.install_handlers``)."""

from __future__ import annotations


class WebError(Exception):
    """A request that cannot be served: shown as a page with a status, a title and a reason.

    The text is shown to whoever holds the link, so it never names a subscriber.
    """

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def not_found(message: str = "There is nothing at this address.") -> WebError:
    return WebError(404, "Page not found", message)


def bad_link(message: str = "This link is not valid.") -> WebError:
    return WebError(400, "This link does not work", message)


class TestLink(WebError):
    """A link from a test issue: a page of its own for people; the JSON API answers it
    as an invalid token (``api_errors.error_response``), like any other link of nobody's."""

    __test__ = False  # not a pytest test class, whatever its name
