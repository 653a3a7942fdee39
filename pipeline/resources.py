"""Files the package reads from the repository: Avro schemas and service configs.

auditpipe is installed editable from its repository (``pip install -e .``), so these live
beside the package. ``AUDITPIPE_RESOURCES`` names another folder that holds ``schemas/``
and ``deploy/`` (for an install elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def resource_root() -> Path:
    return Path(os.environ.get("AUDITPIPE_RESOURCES", _REPO_ROOT))


def resource_path(*parts: str) -> Path:
    """Path of a shipped file, e.g. ``resource_path("schemas", "audit_event_v1.avsc")``."""
    path = resource_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: auditpipe reads schemas/ and deploy/ from its repository; "
            "install it with `pip install -e .` or set AUDITPIPE_RESOURCES"
        )
    return path
