"""Tamper evidence: the per-sandbox hash chain (``hashing``), signed checkpoints of its
heads (``checkpoints``), retention classes and seals of what expires (``retention``,
``seals``), and ``auditpipe verify`` (``verify``, over the chain items of ``items``).

Imports only ``schema``, ``config`` and ``native`` of the pipeline."""
