"""Following authors: typed by the reader, or suggested from their library's seeds."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.errors import NewsletterError
from newsletter.models import FollowedAuthor, LibrarySeed
from newsletter.planning.follows import NameKey, display_name, frequent_authors, name_key

MAX_FOLLOWS = 100


class InvalidAuthor(NewsletterError):
    """A name that cannot be followed (empty, too long, too many follows)."""


def followed(session: Session, subscriber_id: int) -> list[FollowedAuthor]:
    return list(
        session.scalars(
            select(FollowedAuthor)
            .where(FollowedAuthor.subscriber_id == subscriber_id)
            .order_by(FollowedAuthor.name)
        )
    )


def follow(session: Session, subscriber_id: int, name: str) -> tuple[FollowedAuthor, bool]:
    """Follow ``name`` (True: newly; False: already followed under the same key)."""
    shown = display_name(name)
    key = name_key(shown)
    if key is None or len(name) > 200:
        raise InvalidAuthor(f"not an author's name: {name[:60]!r}")
    current = followed(session, subscriber_id)
    for author in current:
        held = NameKey.parse(author.key)
        if held.matches(key) or key.matches(held):
            return author, False
    if len(current) >= MAX_FOLLOWS:
        raise InvalidAuthor(f"at most {MAX_FOLLOWS} followed authors")
    author = FollowedAuthor(subscriber_id=subscriber_id, name=shown, key=str(key))
    session.add(author)
    session.flush()
    return author, True


def unfollow(session: Session, subscriber_id: int, author_id: int) -> bool:
    author = session.get(FollowedAuthor, author_id)
    if author is None or author.subscriber_id != subscriber_id:
        return False
    session.delete(author)
    session.flush()
    return True


def suggested_authors(session: Session, subscriber_id: int, *, limit: int = 8) -> list[str]:
    """The most frequent authors of the reader's seeds, not yet followed."""
    lists = session.scalars(
        select(LibrarySeed.authors).where(LibrarySeed.subscriber_id == subscriber_id)
    )
    keys = {a.key for a in followed(session, subscriber_id)}
    names = frequent_authors(lists, limit=limit + len(keys))
    return [n for n in names if str(name_key(n)) not in keys][:limit]
