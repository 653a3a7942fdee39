"""The event vocabulary: the categories and levels an event may have (schema v1,
``schemas/audit_event.avsc``). The configuration names them too (per-category collapse
windows, per-tenant minimum levels), so they live here, below both."""

from __future__ import annotations

from typing import Literal

Category = Literal[
    "process",
    "file",
    "network",
    "permission",
    "data_transfer",
    "config",
    "api",
    "auth",
    "resource",
    "lifecycle",
]
Level = Literal["debug", "info", "notice", "warning", "error", "critical"]
