"""Redaction measured on a labelled corpus (``tests/data/redaction/corpus.jsonl``):
command lines, URLs and attribute values written from the documented syntax of common
tools, each with the secrets it holds and the evidence that must stay. Every secret is
masked, every piece of evidence kept (``benchmarks/redaction.py`` prints the scores by
rule and form)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import RedactConfig
from pipeline.redaction import Redactor

CORPUS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data/redaction/corpus.jsonl").read_text().splitlines()
]
KEY = b"k" * 32


def event_of(row: dict[str, Any]) -> dict[str, Any]:
    """The corpus text in the field it was written for."""
    field, text = row["field"], row["text"]
    return {
        "actor": {"user": "ci", "cmdline": text if field == "cmdline" else "run"},
        "object": text if field == "object" else "/work",
        "attributes": {"value": text} if field == "attribute" else {},
    }


def stored_text(event: dict[str, Any]) -> str:
    return "\n".join([event["actor"]["cmdline"], event["object"], *event["attributes"].values()])


@pytest.mark.parametrize("row", CORPUS, ids=[f"{n}-{r['form']}" for n, r in enumerate(CORPUS)])
def test_every_secret_is_masked_and_the_evidence_stays(row: dict[str, Any]) -> None:
    masked = Redactor(RedactConfig(), KEY).masked(event_of(row))
    text = stored_text(masked)
    for secret in row["secrets"]:
        assert secret not in text, f"secret left: {secret!r} in {text!r}"
    for evidence in row["keep"]:
        assert evidence in text, f"evidence lost: {evidence!r} in {text!r}"


def test_the_corpus_is_large_and_covers_the_forms() -> None:
    forms = {row["form"] for row in CORPUS}
    assert len(CORPUS) >= 300 and sum(len(r["secrets"]) for r in CORPUS) >= 250
    for form in ("curl -u", "mysql -p", "PGPASSWORD=", "sshpass -p", "docker login -p",
                 "Authorization: Basic", "JWT bare", "Stripe key", "npm token", "PyPI token",
                 "GitLab token", "Google API key", "private key block", "mongodb://",
                 "redis://", "Azure AccountKey=", "evidence only"):  # fmt: skip
        assert form in forms, form


def test_a_mask_tags_the_secret_so_the_same_secret_correlates() -> None:
    redactor = Redactor(RedactConfig(), KEY)
    one = redactor.masked(event_of({"field": "cmdline", "text": "mysql -u a -phunter2 db"}))
    two = redactor.masked(event_of({"field": "cmdline", "text": "PGPASSWORD='hunter2' psql"}))
    other = redactor.masked(event_of({"field": "cmdline", "text": "mysql -u a -phunter3 db"}))
    tag = one["actor"]["cmdline"].split(":")[-1].split("]")[0]
    assert len(tag) == 8 and tag in two["actor"]["cmdline"]
    assert tag not in other["actor"]["cmdline"]
    # Another key, another tag: the tag says nothing without the key.
    elsewhere = Redactor(RedactConfig(), b"x" * 32).masked(
        event_of({"field": "cmdline", "text": "mysql -u a -phunter2 db"})
    )
    assert tag not in elsewhere["actor"]["cmdline"]
    assert "hunter2" not in stored_text(one) + stored_text(two)


def test_masking_a_masked_corpus_changes_nothing() -> None:
    """Idempotent with tags: the edge masks, the worker's stage sees no secret left (a
    chained event is then not refused), whatever the worker's key."""
    edge, worker = Redactor(RedactConfig(), KEY), Redactor(RedactConfig(), b"w" * 32)
    for row in CORPUS:
        once = edge.masked(event_of(row))
        assert not worker.would_change(once), once
