"""``newsletter run``: the one scheduler of a database, with its jobs.

Jobs (``newsletter.scheduler.jobs``; when they run: ``newsletter.scheduler.config``):

- ingest: ``newsletter.papers.fetch.fetch_source`` for every ``[sources.NAME]`` configured
  (no job without sources);
- plan: plan the newest edition for the subscribers whose send time comes within
  ``plan_lookahead_minutes`` (or has passed since both their last issue and the
  arrival of the edition's papers: one catch-up issue after downtime), and set each
  new delivery's ``next_attempt_at`` to that subscriber's send time, so the deliver
  job sends it then and not before (``newsletter.scheduler.sendtimes``, on the schedule
  maths of ``newsletter.scheduler.slots``);
- deliver: ``newsletter.delivery.run.deliver`` over every due delivery;
- refit: refit the stored recommender model (only with ``model_dir``);
- purge: forget sign-ups never confirmed in time.

Exactly one scheduler runs jobs per database (``newsletter.scheduler.locks``): on
PostgreSQL it holds ``pg_try_advisory_lock`` on a dedicated connection for as long as it
runs; on SQLite an exclusive ``flock`` on ``<database>.scheduler.lock``. Another
``newsletter run`` waits as a standby, retrying the lock, and takes over when the first
one stops or dies (the operating system or PostgreSQL releases the lock of a dead
process). ``newsletter.scheduler.runner`` runs it all on APScheduler.
"""
