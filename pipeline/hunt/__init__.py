"""``auditpipe hunt``: rules run over stored events (``run.py``; the SQL is
``pipeline/rules/sql.py``)."""
