"""The worker's stages, built from the configuration, in order, with typed handles on
the few the worker drives itself (no probing of the list by class)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.chain.checkpoints import load_key
from pipeline.config import Settings
from pipeline.redaction import redaction_key
from pipeline.rules.integrity import ChainMonitor
from pipeline.schema.event import Event
from pipeline.stages.base import Stage
from pipeline.stages.collapse import CollapseStage
from pipeline.stages.dedup import DedupStage
from pipeline.stages.detect import DetectStage
from pipeline.stages.enrich import EnrichStage, Inventory, StaticInventory
from pipeline.stages.fairness import FairnessStage, FairShare
from pipeline.stages.policy import PolicyFile, PolicyStage
from pipeline.stages.redact import RedactStage
from pipeline.stages.validate import ValidateStage


@dataclass
class Stages:
    """The stages in data-flow order, and the handles the worker needs: the dedup window
    (persisted in a Faust table), the detection stage (its rules reloaded on SIGHUP, its
    windows persisted, its chain heads signed), the redaction of dead letters and the
    rate limits' state (the deferred path tells it what it took)."""

    all: list[Stage]
    dedup: DedupStage
    detect: DetectStage | None
    redact: RedactStage
    fair: FairShare | None = None

    def for_deferred(self) -> Stages:
        """The same stages (the same state) for messages taken from the deferred topic:
        all but the fairness stage, which decided to defer them already."""
        return replace(self, all=[s for s in self.all if s.name != FairnessStage.name])

    @property
    def chain(self) -> ChainMonitor | None:
        """The live chain check whose heads the checkpoints sign (None: integrity off)."""
        return self.detect.engine.chain if self.detect is not None else None

    def mask(self, event: Event) -> Event:
        """A copy of ``event`` with its secrets masked (dead letters store it)."""
        return self.redact.masked(event)


def default_stages(settings: Settings, inventory: Inventory | None = None) -> Stages:
    """The stages between decode and the sink, in order.

    The rate limits come first: a deferred message costs no other stage's time. Detection
    runs before the level policy, which keeps every event a rule matched.
    """
    dedup = DedupStage(settings.dedup, secret=load_key(settings))
    detect = DetectStage(settings.rules) if settings.rules.enabled else None
    redact = RedactStage(settings.redact, redaction_key(settings.redact, settings.home))
    fair = FairShare(settings.fairness) if settings.fairness.enabled else None
    stages: list[Stage] = [
        *([FairnessStage(fair)] if fair is not None else []),
        ValidateStage(settings.validation),
        dedup,
        EnrichStage(inventory or StaticInventory({})),
        *([detect] if detect is not None else []),
        PolicyStage(PolicyFile(settings.policy.file)),
        CollapseStage(settings.collapse),
        redact,
    ]
    return Stages(stages, dedup, detect, redact, fair)
