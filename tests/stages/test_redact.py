"""The redact stage: each rule masks what it should and leaves the rest alone."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import RedactConfig
from pipeline.redaction import REDACTED_ATTRIBUTE
from pipeline.stages.base import BatchContext
from pipeline.stages.redact import RedactStage

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def event(cmdline: str = "", obj: str = "", **attributes: str) -> dict[str, Any]:
    return {
        "actor": {"user": "ci", "cmdline": cmdline},
        "object": obj,
        "attributes": dict(attributes),
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
            "export AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key]",
        ),
        (
            f"aws_secret_access_key = {AWS_SECRET}",
            "aws_secret_access_key = [REDACTED:aws_secret_key]",
        ),
        (
            "curl -H 'Authorization: Bearer abc.def-ghi'",
            "curl -H 'Authorization: Bearer [REDACTED:bearer_token]'",
        ),
        (
            "git clone https://deploy:s3cr3t@git.example.com/repo.git",
            "git clone https://deploy:[REDACTED:url_password]@git.example.com/repo.git",
        ),
        ("mysql --password=hunter2 -h db", "mysql --password=[REDACTED:secret_flag] -h db"),
        ("app --api-key: 12345abc", "app --api-key: [REDACTED:secret_param]"),
        (
            "gh auth login --with-token ghp_" + "a" * 36,
            "gh auth login --with-token [REDACTED:github_token]",
        ),
        ("notify bob.smith+ci@example.org", "notify [REDACTED:email]"),
        (f"echo '{PRIVATE_KEY}' > key", "echo '[REDACTED:private_key]' > key"),
    ],
)
def test_default_rules_mask_secrets(value: str, expected: str) -> None:
    (out,) = RedactStage(RedactConfig()).process([event(cmdline=value)], BatchContext())
    assert out["actor"]["cmdline"] == expected
    assert out["attributes"][REDACTED_ATTRIBUTE].endswith("@actor.cmdline")


@pytest.mark.parametrize(
    "value",
    [
        "make -j2 all",
        "/usr/lib/python3.11/site-packages/keyring/backend.py",
        "git clone https://github.com/org/repo.git",
        "ssh-keygen -t ed25519",
        "python -m pip install token-bucket==0.3",
        "echo AKIA-not-a-key",
    ],
)
def test_ordinary_values_are_left_alone(value: str) -> None:
    (out,) = RedactStage(RedactConfig()).process([event(cmdline=value, obj=value)], BatchContext())
    assert out["actor"]["cmdline"] == value
    assert out["object"] == value
    assert REDACTED_ATTRIBUTE not in out["attributes"]


def test_fields_rules_and_counts_follow_the_config() -> None:
    config = RedactConfig(
        fields=["object"], disable=["email"], rules={"ticket": r"(?P<keep>TICKET-)\d+"}
    )
    stage = RedactStage(config)
    ctx = BatchContext()
    (out,) = stage.process(
        [event(cmdline="--password=x", obj="a@b.com TICKET-42", note="--password=y")], ctx
    )
    assert out["actor"]["cmdline"] == "--password=x"  # not a configured field
    assert out["attributes"]["note"] == "--password=y"
    assert out["object"] == "a@b.com TICKET-[REDACTED:ticket]"
    assert ctx.counted("redactions", rule="ticket") == 1
    assert ctx.counted("redactions") == 1


def test_disabled_stage_changes_nothing() -> None:
    original = event(cmdline="--password=x")
    (out,) = RedactStage(RedactConfig(enabled=False)).process(
        [event(cmdline="--password=x")], BatchContext()
    )
    assert out == original


def test_a_dead_letter_of_one_event_stores_it_masked_and_the_event_is_untouched() -> None:
    from pipeline.schema.deadletter import DeadLetters, Provenance

    stage = RedactStage(RedactConfig())
    original = event(cmdline="mysql --password=hunter2-Secret! prod", token="Bearer abc.def.ghi")
    original.update(event_id="e-1", kafka_partition=0, kafka_offset=5)
    dead = DeadLetters(mask=stage.masked)
    dead.event(Provenance("t", 0, 5, None), "oversized_field", "x", original)
    stored = dead.records[0]["original"]
    assert b"hunter2-Secret!" not in stored and b"[REDACTED:secret_flag]" in stored
    assert original["actor"]["cmdline"] == "mysql --password=hunter2-Secret! prod"


def chained(cmdline: str) -> dict[str, Any]:
    base = event(cmdline=cmdline)
    base.update(event_id="c-1", hash=b"h" * 32, prev_hash=b"p" * 32, kafka_partition=0,
                kafka_offset=9)  # fmt: skip
    return base


def test_an_event_masked_at_the_edge_passes_the_worker_unchanged() -> None:
    """Masking is idempotent and names only values it changed: a chained event the
    collector masked is left exactly as sealed (its hash still covers it)."""
    from pipeline.redaction import Redactor
    from pipeline.stages.base import BatchContext

    at_edge = chained("mysql --password=hunter2 https://bob:pw@git.example.com a@b.org")
    assert Redactor(RedactConfig()).mask(at_edge)
    sealed = {**at_edge, "actor": dict(at_edge["actor"]), "attributes": dict(at_edge["attributes"])}
    ctx = BatchContext("audit.events")
    assert RedactStage(RedactConfig()).process([at_edge], ctx) == [sealed]
    assert not ctx.dead


def test_a_chained_event_that_still_holds_a_secret_is_dead_lettered_masked() -> None:
    from pipeline.schema.deadletter import DeadLetters
    from pipeline.stages.base import BatchContext

    stage = RedactStage(RedactConfig())
    ctx = BatchContext("audit.events", dead=DeadLetters(mask=stage.masked))
    raw = chained("psql postgres://app:s3cretPW@db/prod")
    assert stage.process([raw], ctx) == []
    (record,) = ctx.dead.records
    assert record["reason"] == "secret_after_chain"
    assert b"s3cretPW" not in record["original"]
    assert raw["actor"]["cmdline"] == "psql postgres://app:s3cretPW@db/prod"  # not changed


def test_masks_in_a_value_do_not_make_the_rules_run_again() -> None:
    from pipeline.redaction import Redactor

    redactor = Redactor(RedactConfig())
    calls = []
    for rule in redactor.rules:
        original = rule.apply

        def counting(value: str, key: Any = None, original: Any = original) -> Any:
            calls.append(value)
            return original(value, key)

        object.__setattr__(rule, "apply", counting)
    masked = event(cmdline="gh auth [REDACTED:github_token] [REDACTED:aws_secret_key:0a1b2c3d]")
    assert not redactor.mask(masked)
    assert calls == []  # the prefilter saw no trigger once the mask was set aside


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [(r"(?=secret)\w+", "invalid perl operator: (?="), (r"(a)\1", "invalid escape sequence")],
)
def test_an_operator_rule_a_linear_time_engine_cannot_run_is_refused_at_start(
    pattern: str, problem: str
) -> None:
    from pipeline.config import ConfigError
    from pipeline.redaction import Redactor

    with pytest.raises(ConfigError, match=r"^redact\.rules\.mine: ") as refused:
        Redactor(RedactConfig(rules={"mine": pattern}))
    assert problem in str(refused.value) and "RE2" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_every_rule_runs_on_re2() -> None:
    import re2

    from pipeline.redaction import Redactor

    rules = Redactor(RedactConfig(rules={"ticket": r"TICKET-\d+"})).rules
    assert rules and all(isinstance(rule.pattern, re2._Regexp) for rule in rules)


def test_the_parent_command_line_is_masked_and_a_chained_one_refused() -> None:
    """Schema v2's parent command line carries the same secrets as the child's (``deploy
    --token ...`` runs ``sh``): searched by default, at the edge and in the worker."""
    stage = RedactStage(RedactConfig())
    plain = event(cmdline="sh -c id")
    plain["actor"]["parent_cmdline"] = "deploy --password=hunter2-Secret! prod"
    (out,) = stage.process([plain], BatchContext())
    assert "hunter2-Secret!" not in out["actor"]["parent_cmdline"]
    assert "[REDACTED:" in out["actor"]["parent_cmdline"]
    sealed = chained("sh -c id")
    sealed["actor"]["parent_cmdline"] = "deploy --password=hunter2-Secret! prod"
    ctx = BatchContext()
    assert stage.process([sealed], ctx) == []
    assert ctx.dead.records[0]["reason"] == "secret_after_chain"
