"""The syscall tables are the kernel's: the committed file agrees with what
deploy/syscalls/generate.py makes of the installed UAPI headers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipeline.collect.sources.syscall_numbers import GENERIC_64, X86_64

ROOT = Path(__file__).resolve().parents[3]
INCLUDE = Path("/usr/include")


def test_known_numbers_of_each_architecture() -> None:
    assert (X86_64["0"], X86_64["59"], X86_64["257"], X86_64["322"]) == (
        "read",
        "execve",
        "openat",
        "execveat",
    )
    assert (GENERIC_64["221"], GENERIC_64["56"], GENERIC_64["80"], GENERIC_64["79"]) == (
        "execve",
        "openat",
        "fstat",  # the 64-bit name, not fstat64
        "newfstatat",
    )


@pytest.mark.skipif(
    not (INCLUDE / "asm-generic/unistd.h").exists(), reason="no kernel UAPI headers here"
)
def test_the_committed_tables_agree_with_the_headers() -> None:
    """Every number both know has the same name (a newer header may add calls)."""
    spec = importlib.util.spec_from_file_location("generate", ROOT / "deploy/syscalls/generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    headers = {
        "X86_64": generate.x86_64((INCLUDE / "x86_64-linux-gnu/asm/unistd_64.h").read_text()),
        "GENERIC_64": generate.generic((INCLUDE / "asm-generic/unistd.h").read_text()),
    }
    for name, committed in (("X86_64", X86_64), ("GENERIC_64", GENERIC_64)):
        fresh = {str(number): call for number, call in headers[name].items()}
        shared = committed.keys() & fresh.keys()
        assert len(shared) > 300, name
        assert {n: committed[n] for n in shared} == {n: fresh[n] for n in shared}, name
