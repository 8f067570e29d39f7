"""Operators of the admin area: usernames with argon2id-hashed passwords.

``create_operator`` is what ``newsletter admin create-user`` calls; ``authenticate``
is what the login form calls. A wrong username costs as much time as a wrong password
(a dummy hash is verified), so the login form tells nobody which usernames exist.
``end_sessions`` (logout) and ``set_password`` bump the operator's session version,
which ends every admin session issued before (see ``newsletter.web.admin.auth``).
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.errors import NewsletterError
from newsletter.models import Operator, utcnow

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class OperatorError(NewsletterError):
    """An operator cannot be created as asked."""


def normalise_username(username: str) -> str:
    return username.strip().lower()


def create_operator(session: Session, username: str, password: str) -> Operator:
    """Add an operator (the caller commits); refuse a taken name or a weak password."""
    name = normalise_username(username)
    if not _USERNAME.fullmatch(name):
        raise OperatorError(
            "a username is 1-64 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise OperatorError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if session.scalar(select(Operator.id).where(Operator.username == name)) is not None:
        raise OperatorError(f"operator {name!r} exists already")
    operator = Operator(username=name, password_hash=_hasher.hash(password))
    session.add(operator)
    session.flush()
    return operator


def find_operator(session: Session, username: str) -> Operator | None:
    """The operator of this (normalised) username, if there is one."""
    return session.scalars(
        select(Operator).where(Operator.username == normalise_username(username))
    ).one_or_none()


def set_password(session: Session, operator: Operator, password: str) -> None:
    """Change the password (the caller commits); every earlier session of theirs ends."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise OperatorError(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    operator.password_hash = _hasher.hash(password)
    # In SQL, so a concurrent logout's bump is not lost.
    operator.session_version = Operator.session_version + 1
    session.flush()


def end_sessions(session: Session, operator_id: int) -> None:
    """End every admin session of this operator issued so far (the caller commits)."""
    session.execute(
        update(Operator)
        .where(Operator.id == operator_id)
        .values(session_version=Operator.session_version + 1)
    )


def authenticate(session: Session, username: str, password: str) -> Operator | None:
    """The operator these credentials belong to (login time recorded), or None."""
    name = normalise_username(username)
    operator = (
        session.scalars(select(Operator).where(Operator.username == name)).one_or_none()
        if len(password) <= MAX_PASSWORD_LENGTH
        else None
    )
    try:
        _hasher.verify(operator.password_hash if operator else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if operator is None:
        return None
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    operator.last_login_at = utcnow()
    session.flush()
    return operator
