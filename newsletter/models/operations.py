"""What operators and the service keep: suppressions, bounces, the shared send
rate, operators and their actions, source state, failures of account mail and the
relay."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.models.base import (
    Base,
    BounceKind,
    new_link_key,
    string_enum,
    utcnow,
)


class Suppression(Base):
    """An address that must never be mailed again (hard bounce, complaint, operator)."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Bounce(Base):
    """One bounce of one address: refused over SMTP, or reported later by a DSN.

    At most one per delivery and kind, so reading the same bounce mailbox twice, or a
    DSN arriving for a delivery already refused at RCPT, never counts twice.
    """

    __tablename__ = "bounces"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[BounceKind] = mapped_column(string_enum(BounceKind))
    source: Mapped[str] = mapped_column(String(16))  # smtp | dsn
    code: Mapped[int | None] = mapped_column(SmallInteger)
    reply: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("delivery_id", "kind"),)


class SendRate(Base):
    """Messages sent per time bucket, shared by every worker of one database.

    ``scope`` "s" holds 100 ms buckets (the per-second limit), "h" one-minute buckets
    (the per-hour limit); ``bucket`` is the bucket's start in those units since the epoch.
    """

    __tablename__ = "send_rate"

    scope: Mapped[str] = mapped_column(String(1), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Operator(Base):
    """Someone who may use the admin area (``newsletter admin create-user``; migration 0006)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # Every admin session cookie carries it; bumped at logout and at a password change
    # to end every session issued before (migration 0010). Starts random like
    # ``Subscriber.token_version``, so a reused id never revives a deleted operator's
    # sessions; operators from before 0010 start at 1.
    session_version: Mapped[int] = mapped_column(Integer, default=new_link_key, server_default="1")


class SourceState(Base):
    """Where a paper source resumes (e.g. the OAI-PMH from-date; migration 0009).

    In the database, not a file, so the standby scheduler on another machine resumes
    where the active one stopped, and the state advances in the same transaction as
    the papers it covers.
    """

    __tablename__ = "source_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccountMailFailure(Base):
    """An account mail (confirm a sign-up, a new address, ...) that did not go out
    (migration 0012). Such mails are sent after the page has answered, so nobody sees
    them fail but the operator: ``newsletter status``, the admin area and /metrics."""

    __tablename__ = "account_mail_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    template: Mapped[str] = mapped_column(String(32))  # confirm, already, address
    email: Mapped[str] = mapped_column(String(320))
    code: Mapped[int | None] = mapped_column(SmallInteger)  # the relay's reply code, if any
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class RelayError(Base):
    """The relay could not be reached, or refused or deferred mail (migration 0013): one
    row per delivery run (or batch of outcomes) that met it, newest first on the admin
    dashboard, in ``newsletter status`` and /metrics, so a relay that is down shows
    where the operator looks even though no delivery changed."""

    __tablename__ = "relay_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # unreachable, deferred, refused
    code: Mapped[int | None] = mapped_column(SmallInteger)  # the relay's reply code, if any
    reply: Mapped[str] = mapped_column(Text)  # its reply, or the connection error
    deliveries: Mapped[int] = mapped_column(Integer, default=0)  # how many it touched
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AdminAction(Base):
    """What an operator did to a subscriber's record, and why (migration 0013): the
    admin subscriber page's and ``newsletter subscribers``' actions (unsubscribe,
    delete, resend confirmation, lift a suppression). Keeps the address, not the id:
    a deleted subscriber's record is gone, the note that it was deleted is not."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator: Mapped[str] = mapped_column(String(64))  # a username, or "cli"
    action: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(String(320), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
