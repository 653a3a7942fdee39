"""Layers import downward only: a module never imports one of a higher layer (lazy
imports inside functions included). The layers, bottom up, are those of
docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
LAYERS = [
    ("pipeline.schema", 0),
    ("pipeline.native", 0),
    ("pipeline._native", 0),
    ("pipeline.resources", 0),
    ("pipeline.config", 1),
    ("pipeline.siem", 1),
    ("pipeline.redaction", 1),
    ("pipeline.redaction_rules", 1),
    ("pipeline.topics", 1),
    ("pipeline.kafka_clients", 1),
    ("pipeline.chain", 2),
    ("pipeline.collect", 3),
    ("pipeline.rules", 3),
    ("pipeline.sim", 3),
    ("pipeline.stages", 4),
    ("pipeline.outputs", 5),
    ("pipeline.worker", 6),
    ("pipeline.forward", 6),
    ("pipeline.export", 6),
    ("pipeline.hunt", 6),
    ("pipeline.stack", 7),
    ("pipeline.commands", 8),
    ("pipeline.cli", 9),
    ("pipeline", 0),  # the package's own __init__ (imports nothing)
]
"""Module prefix -> layer. The same layer may import across its packages (``collect``
uses nothing of ``rules``, but nothing forbids it)."""


def layer(module: str) -> int | None:
    for prefix, rank in LAYERS:
        if module == prefix or (prefix != "pipeline" and module.startswith(prefix + ".")):
            return rank
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every pipeline module ``path`` imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {name for name in out if name.startswith("pipeline")}


def violations(modules: dict[str, Path]) -> list[str]:
    """Upward imports of ``modules`` (module name -> its file)."""
    found = []
    for importer, path in modules.items():
        own = layer(importer)
        assert own is not None, f"{importer}: no layer (add it to LAYERS and the docs)"
        for name in sorted(imports(path)):
            rank = layer(name)
            if rank is not None and rank > own:
                found.append(f"{importer} (layer {own}) imports {name} (layer {rank})")
    return found


def test_every_module_imports_downward_only() -> None:
    modules = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    assert len(modules) > 80
    assert violations(modules) == []


@pytest.mark.parametrize(
    ("module", "text"),
    [
        ("schema/x.py", "from pipeline.config import Settings\n"),
        ("stages/x.py", "def f():\n    from pipeline.worker.app import BatchProcessor\n"),
        ("stages/y.py", "import pipeline.outputs.clickhouse.sink\n"),
        ("chain/x.py", "from pipeline.stages.base import BatchContext\n"),
    ],
)
def test_an_upward_import_is_found(tmp_path: Path, module: str, text: str) -> None:
    scratch = tmp_path / module.replace("/", "_")
    scratch.write_text(text)
    name = "pipeline." + module.removesuffix(".py").replace("/", ".")
    found = violations({name: scratch})
    assert found and all(line.startswith(f"{name} (layer ") for line in found), found
