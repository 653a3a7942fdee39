"""``auditpipe forward``: alerts from ``audit.alerts`` to SIEM destinations.

Each destination of ``forward.destinations`` runs its own loop (``runner.py``) with its
own consumer group: read a batch, keep what the destination wants, deliver it
(``deliver.py``: retried while the destination is down, split to find and dead-letter
what it refuses for good), then commit. An offset is committed only after every
record before it was delivered, filtered out on purpose, or dead-lettered with its
reason: nothing is lost silently, and a restart resends at most the batch in flight.
"""
