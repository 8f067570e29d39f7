"""Asynchronous bounces: delivery status notifications read and applied to deliveries.

``dsn`` reads a DSN into the recipients it reports, ``matching`` finds the delivery
each is about and applies the bounce rules, ``mailboxes`` reads the bounce mailbox
(Maildir, IMAP or POP3) and is what ``newsletter bounces`` runs.
"""
