"""The ``auditpipe`` commands other than the worker's and the collector's internals: each
module a command (``init``, ``retention``, ``deadletter``, ``alerts``, ``rules``, ``run``,
``collect``). The top layer: may import every other part; nothing imports it but
``pipeline.cli``."""
