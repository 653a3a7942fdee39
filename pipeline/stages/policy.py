"""Policy stage: the minimum level stored, per environment and category.

Events below the threshold are not stored raw: they are counted per minute, sandbox,
category and level, and the counts go to ClickHouse (``audit.events_policy_rollup``),
so nothing vanishes uncounted. An event that a detection rule matched
(``event["matched_rules"]``) is always stored. The policy file is re-read when it
changes, without a restart; a file that fails to load leaves the old policy in force.

The file (YAML)::

    default: info              # environments not listed below
    environments:
      dev: debug
      staging: info
      prod-replica: warning
    overrides:                 # per environment, per category
      prod-replica:
        auth: info
        permission: debug

>>> policy = Policy.parse({"default": "info", "environments": {"dev": "debug"},
...                        "overrides": {"prod": {"auth": "debug"}}})
>>> policy.minimum("dev", "file"), policy.minimum("prod", "auth"), policy.minimum("x", "file")
(0, 0, 1)
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.chain.hashing import GENESIS
from pipeline.schema.event import LEVELS, Event
from pipeline.stages.base import BatchContext, ChainLink, KeptBack, StageBase

log = logging.getLogger("auditpipe.policy")


class PolicyError(ValueError):
    """The policy file is not valid; the message says where."""


def _level(value: Any, where: str) -> int:
    if value not in LEVELS:
        raise PolicyError(f"{where}: {value!r} is not one of {', '.join(LEVELS)}")
    return LEVELS.index(value)


@dataclass(frozen=True)
class Policy:
    default: int = 0
    environments: dict[str, int] = field(default_factory=dict)
    overrides: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any) -> Policy:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise PolicyError("the policy must be a mapping")
        unknown = data.keys() - {"default", "environments", "overrides"}
        if unknown:
            raise PolicyError(f"unknown key {sorted(unknown)[0]!r}")
        environments = data.get("environments") or {}
        overrides = data.get("overrides") or {}
        if not isinstance(environments, dict) or not isinstance(overrides, dict):
            raise PolicyError("environments and overrides must be mappings")
        parsed_overrides = {}
        for env, categories in overrides.items():
            if not isinstance(categories, dict):
                raise PolicyError(f"overrides.{env} must map categories to levels")
            for category, level in categories.items():
                parsed_overrides[(str(env), str(category))] = _level(
                    level, f"overrides.{env}.{category}"
                )
        return cls(
            default=_level(data.get("default", "debug"), "default"),
            environments={
                str(env): _level(level, f"environments.{env}")
                for env, level in environments.items()
            },
            overrides=parsed_overrides,
        )

    def minimum(self, environment: str, category: str) -> int:
        override = self.overrides.get((environment, category))
        if override is not None:
            return override
        return self.environments.get(environment, self.default)


@dataclass
class PolicyFile:
    """A policy file, re-read when its modification time or size changes."""

    path: Path | None
    policy: Policy = field(default_factory=Policy)
    _stamp: tuple[int, int] | None = None

    def current(self) -> Policy:
        if self.path is None:
            return self.policy
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None:
                log.error("policy file %s is gone; keeping the policy in force", self.path)
                self._stamp = None
            return self.policy
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.policy = Policy.parse(yaml.safe_load(self.path.read_text()))
                log.info("policy loaded from %s", self.path)
            except (PolicyError, yaml.YAMLError) as exc:
                log.error(
                    "policy file %s not loaded, the previous policy stays in force: %s",
                    self.path,
                    exc,
                )
        return self.policy


class PolicyStage(StageBase):
    """Events below the policy's level leave the batch: counted per minute on
    ``ctx.kept_back`` (and by level and category), their chain links on ``ctx.links``."""

    name = "policy"

    def __init__(self, source: PolicyFile) -> None:
        self.source = source

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        policy = self.source.current()
        if not policy.environments and not policy.overrides and policy.default == 0:
            return events  # everything is stored
        kept = []
        dropped: Counter[tuple[str, str]] = Counter()
        levels = LEVELS.index
        for event in events:
            environment = event.get("environment", "")
            category = event["category"]
            if levels(event["level"]) >= policy.minimum(environment, category) or event.get(
                "matched_rules"
            ):
                kept.append(event)
                continue
            minute = event["ts"] // 60_000 * 60
            ctx.kept_back[
                KeptBack(
                    minute,
                    event["tenant"],
                    event["sandbox_id"],
                    environment,
                    category,
                    event["level"],
                )
            ] += 1
            dropped[(event["level"], category)] += 1
            if event.get("hash") is not None:
                ctx.links.append(
                    ChainLink(
                        event["tenant"],
                        event["sandbox_id"],
                        event["seq"],
                        event["ts"],
                        event["hash"],
                        event.get("prev_hash") or GENESIS,
                    )
                )
        for (level, category), n in dropped.items():  # once per pair, not per event
            ctx.count("events_dropped_by_policy", n, level=level, category=category)
        return kept
