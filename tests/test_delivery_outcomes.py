"""What each SMTP outcome means, without a database: ``delivery.outcomes.classify``.

The writers that store the classified outcomes are exercised end to end by
test_delivery.py and test_delivery_faults.py; here only the rules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsletter.delivery.compose import Outgoing
from newsletter.delivery.outcomes import classify
from newsletter.delivery.smtp import SendResult
from newsletter.models import DeliveryStatus

NOW = datetime(2026, 5, 27, 8, 0, tzinfo=UTC)


def outgoing(delivery_id: int, attempts: int = 0) -> Outgoing:
    return Outgoing(
        delivery_id=delivery_id,
        recipient=f"r{delivery_id}@example.org",
        message_id=f"<{delivery_id}@example.org>",
        message=b"",
        attempts=attempts,
    )


def test_each_outcome_is_classified_by_what_the_relay_said() -> None:
    outcomes = [
        (outgoing(1), SendResult(status="sent", code=250, reply="2.0.0 ok")),
        (outgoing(2), SendResult(status="temporary", code=451, reply="4.3.0 later")),
        (outgoing(3), SendResult(status="permanent", code=550, reply="5.1.1 no such user")),
        (outgoing(4), SendResult(status="permanent", code=None, reply="message not built")),
        (outgoing(5, attempts=4), SendResult(status="temporary", code=None, reply="lost")),
    ]

    classified = classify(outcomes, now=NOW, max_attempts=5, retry_base_seconds=300)

    (sent,) = classified.sent
    assert (sent.delivery_id, sent.status, sent.attempts) == (1, DeliveryStatus.SENT, 1)
    assert (sent.code, sent.reply, sent.message_id) == (250, "2.0.0 ok", "<1@example.org>")
    assert sent.next_attempt_at is None
    # A refusal with an SMTP code is a bounce: the bounce rules decide the rest.
    assert [(o.delivery_id, r.code) for o, r in classified.bounced] == [(3, 550)]
    retry, unbuildable, exhausted = classified.again
    assert (retry.delivery_id, retry.status, retry.attempts) == (2, DeliveryStatus.RETRY, 1)
    assert retry.next_attempt_at is not None
    # backoff(1) is the base, give or take 20 %.
    assert NOW + timedelta(seconds=240) <= retry.next_attempt_at <= NOW + timedelta(seconds=360)
    assert (unbuildable.delivery_id, unbuildable.status) == (4, DeliveryStatus.FAILED)
    assert (exhausted.delivery_id, exhausted.status, exhausted.attempts) == (
        5,
        DeliveryStatus.FAILED,
        5,
    )
    assert unbuildable.next_attempt_at is None
    assert exhausted.next_attempt_at is None
    assert (classified.retried, classified.failed) == (1, 2)
    assert classified.failures == [
        ("r4@example.org", "message not built"),
        ("r5@example.org", "lost"),
    ]


def test_a_long_reply_is_cut_to_what_is_stored() -> None:
    reply = "4" * 5000
    outcomes = [(outgoing(1), SendResult(status="temporary", code=421, reply=reply))]

    (retry,) = classify(outcomes, now=NOW, max_attempts=5, retry_base_seconds=300).again

    assert retry.reply == reply[:2000]


def test_nothing_to_classify_is_nothing_to_write() -> None:
    classified = classify([], now=NOW, max_attempts=5, retry_base_seconds=300)

    assert (classified.sent, classified.again, classified.bounced) == ([], [], [])
    assert classified.failures == []


def test_item_terms_are_parsed_for_a_whole_batch_and_a_bad_value_alone() -> None:
    from newsletter.delivery.compose import _json_lists

    assert _json_lists(['["a", "b c"]', "[]", None, '["\\u00e9t\\u00e9"]']) == [
        ["a", "b c"],
        [],
        [],
        ["été"],
    ]
    # When the joined values do not parse as an array of as many, each is read alone: a
    # value that does not parse has no terms, the others keep theirs. (Two bad values
    # that happen to join into valid JSON are not caught: this is for PostgreSQL's json
    # column, which holds only valid JSON; SQLite's values are parsed one by one.)
    assert _json_lists(['["a"]', '["x", ', '"b"]', '{"k": 1}', '["z"]']) == [
        ["a"],
        [],
        [],
        [],
        ["z"],
    ]
