"""The delivery engine: an outbox of deliveries worked through by SMTP workers.

State machine of a delivery (``DeliveryStatus``)::

    pending ──claim──► claimed ──250──► sent
    retry ───(due)──►     │  ├──4xx, lost connection──► retry (backoff) … failed after max_attempts
                          │  ├──5xx──► bounced (+ the bounce rules of delivery.suppression)
                          │  └──suppressed address, or subscriber gone──► suppressed
                          └──lease expired (worker died)──► claimable again

A worker claims due deliveries in batches with a lease (PostgreSQL ``SELECT … FOR
UPDATE SKIP LOCKED``, so any number of workers on any number of machines share one
outbox; SQLite: one ``UPDATE … RETURNING`` under its single write lock), keeps the
leases of what it holds alive with a heartbeat, and gives back what it has not
sent when it stops. Inside a worker, one asyncio loop runs a producer (claim in a
thread, then render and assemble each message, yielding to the loop between
messages), C sender tasks that each keep one SMTP session of the pool busy, and a
recorder that commits outcomes as soon as the previous commit is done (group
commit: the window in which a message the relay accepted is not yet marked sent is
one commit long). A delivery marked sent is never claimed again; the Message-ID is
derived from the delivery, so the rare resend after a crash inside that window is
recognisable downstream.

Where each part lives:

- ``outbox``: which deliveries are claimable now, claiming, leases, giving back (the
  open and waiting states are ``models.OPEN`` / ``models.WAITING``; cancelling a
  subscriber's open deliveries is ``subscribers.accounts.cancel_open_deliveries``);
- ``compose``: claimed deliveries loaded as ``Job`` values and turned into messages;
- ``outcomes``: what each SMTP outcome means and how it is stored; the run's summary;
- ``worker``: one worker's asyncio pipeline (producer, senders, recorder, heartbeat);
- ``run``: ``deliver``, worker processes and stop signals;
- ``smtp`` (the connection pool), ``sendrate`` (the shared rate limit),
  ``suppression`` (the bounce rules), ``testsend`` and ``preview``.
"""
