"""The one HTTP client every remote paper source uses.

Polite by construction: a User-Agent naming the project and a contact address, a
timeout on every request, a courtesy delay between consecutive requests (arXiv asks
for 3 seconds), retries with exponential backoff on timeouts, dropped connections and
HTTP 429/5xx, and ``Retry-After`` honoured (seconds or an HTTP date) on 429 and 503.
Anything that still fails raises ``FetchError`` with the source, the URL and why.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType

import httpx

from newsletter import __version__
from newsletter.errors import NewsletterError
from newsletter.settings import Settings

# Retried statuses: rate limited, and the server-side failures that are usually brief.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class FetchError(NewsletterError):
    """A paper source could not be read; the message names the source, the URL and why."""


@dataclass(frozen=True)
class HttpOptions:
    timeout: float = 30.0
    retries: int = 4
    backoff_seconds: float = 2.0
    max_wait_seconds: float = 300.0
    delay_seconds: float = 0.0
    user_agent: str = f"paper-newsletter/{__version__}"

    @classmethod
    def from_settings(cls, settings: Settings, *, delay_seconds: float) -> HttpOptions:
        contact = settings.source_contact or settings.sender_address
        return cls(
            timeout=settings.source_timeout,
            retries=settings.source_retries,
            backoff_seconds=settings.source_backoff_seconds,
            max_wait_seconds=settings.source_max_wait_seconds,
            delay_seconds=delay_seconds,
            user_agent=(
                f"paper-newsletter/{__version__} (+{settings.public_url}; mailto:{contact})"
            ),
        )


def retry_after(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, if it said so in a form we understand."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpClient:
    """A synchronous httpx client with courtesy delay, retries and clear errors."""

    def __init__(
        self,
        options: HttpOptions,
        *,
        source: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = options
        self.source = source
        self.requests = 0
        self._sleep = sleep
        self._clock = clock
        self._last_done: float | None = None
        self._client = httpx.Client(
            timeout=httpx.Timeout(options.timeout),
            headers={"User-Agent": options.user_agent},
            follow_redirects=True,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _courtesy_wait(self) -> None:
        # Measured from the end of the previous response, so the gap the server sees
        # between two requests is never shorter than the delay.
        if self._last_done is None or self.options.delay_seconds <= 0:
            return
        remaining = self.options.delay_seconds - (self._clock() - self._last_done)
        if remaining > 0:
            self._sleep(remaining)

    def _backoff(self, attempt: int) -> float:
        base = self.options.backoff_seconds * (2.0 ** (attempt - 1))
        return base * (1.0 + random.random() * 0.25)  # a little jitter, never shorter

    def fail(self, url: str, reason: str) -> FetchError:
        return FetchError(f"source {self.source!r}: {url}: {reason}")

    def get(self, url: str, params: Mapping[str, str | int] | None = None) -> httpx.Response:
        """GET with retries; raises ``FetchError`` once the retries are spent."""
        try:
            shown = str(httpx.URL(url, params=dict(params or {})))
        except httpx.InvalidURL as exc:
            raise self.fail(url, f"invalid URL ({exc})") from None
        attempt = 0
        while True:
            self._courtesy_wait()
            wait: float | None = None
            try:
                self.requests += 1
                response = self._client.get(url, params=params)
            except httpx.TimeoutException:
                reason = f"timed out after {self.options.timeout:g} s"
            except httpx.TransportError as exc:
                reason = f"connection failed ({type(exc).__name__}: {exc})"
            except httpx.RequestError as exc:  # a broken encoding, a redirect loop
                reason = f"bad response ({type(exc).__name__}: {exc})"
            else:
                if response.status_code < 400:
                    return response
                reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                if response.status_code not in RETRY_STATUSES:
                    raise self.fail(shown, reason)
                if response.status_code in (429, 503):
                    wait = retry_after(response)
            finally:
                self._last_done = self._clock()
            attempt += 1
            if attempt > self.options.retries:
                raise self.fail(shown, f"{reason}; gave up after {attempt} attempts")
            if wait is None:
                wait = self._backoff(attempt)
            elif wait > self.options.max_wait_seconds:
                raise self.fail(
                    shown,
                    f"{reason}; the server asks to retry after {wait:g} s, longer than "
                    f"source_max_wait_seconds ({self.options.max_wait_seconds:g} s)",
                )
            self._sleep(wait)


def require_content_type(client: HttpClient, response: httpx.Response, *kinds: str) -> None:
    """Refuse a response whose Content-Type contains none of ``kinds`` (e.g. an HTML error page)."""
    content_type = response.headers.get("Content-Type", "")
    if not any(kind in content_type.lower() for kind in kinds):
        raise client.fail(
            str(response.request.url),
            f"expected {' or '.join(kinds)} content, got {content_type or 'no Content-Type'!r}",
        )
