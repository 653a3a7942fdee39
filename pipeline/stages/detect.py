"""Detect stage: the detection rules over each batch; alerts for the worker to publish.

It runs after enrich (rules see the sandbox's environment and labels) and before the
level policy, which keeps every event a rule matched. Alerts carry ids, times and
evidence event ids, never field values, so redaction later in the path leaves nothing
secret in them.

The rules reload without a restart: the stage checks the files' modification times
every ``rules.reload_check_s`` (a SIGHUP makes it check at the next batch). A file that
fails to load keeps the old rules in force and logs why; rules whose definition did not
change keep their window state across the reload.
"""

from __future__ import annotations

import logging
import os
import time

from pipeline.config import RulesConfig
from pipeline.rules.engine import DetectionEngine
from pipeline.rules.language import RuleError, RuleSet, load_rules, rule_files
from pipeline.schema.event import Event
from pipeline.stages.base import BatchContext, StageBase

log = logging.getLogger("auditpipe.detect")
EXPIRE_EVERY_S = 10.0


class RuleSource:
    """The configured rule files, loaded again when one of them changes."""

    def __init__(self, config: RulesConfig) -> None:
        self.config = config
        self.paths = list(config.paths)
        self.stamp = self._stamp()
        self.reload_failures = 0

    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        stamps = []
        for path in rule_files(self.paths, self.config.builtin):
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append((str(path), 0, 0))
                continue
            stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
        # A new file in a rule directory changes the set, not only a stamp.
        stamps.extend((str(p), -1, -1) for p in self.paths if p.is_dir())
        return tuple(stamps)

    def load(self) -> RuleSet:
        return load_rules(self.paths, self.config.builtin)

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        return True


class DetectStage(StageBase):
    """The detection rules over each chunk: alerts on ``ctx.alerts`` (summaries of
    suppression windows at the end of the batch), matches and the engine's counters on
    ``ctx.counts``."""

    name = "detect"

    def __init__(self, config: RulesConfig, source: RuleSource | None = None) -> None:
        self.config = config
        self.source = source or RuleSource(config)
        self.engine = self._engine(self.source.load())
        self.reload_requested = False
        self._seen = {"late": 0, "evicted": 0, "reload_failures": 0}
        """The engine's running totals already counted (they only grow)."""
        self._checked_at = time.monotonic()
        self._expired_at = time.monotonic()
        log.info("detection: %d rules enabled", len(self.engine.rules))

    def _engine(self, ruleset: RuleSet) -> DetectionEngine:
        return DetectionEngine(
            ruleset,
            lateness_ms=round(self.config.lateness_s * 1000),
            suppress_ms=round(self.config.suppress_s * 1000),
            integrity=self.config.integrity,
            verify_hashes=self.config.verify_hashes,
            max_window_events=self.config.max_window_events,
        )

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        self.check_reload()
        ctx.alerts.extend(self.engine.process(events))
        now = time.monotonic()
        if now - self._expired_at >= EXPIRE_EVERY_S:
            self.engine.expire()
            self._expired_at = now
        return events

    def finish(self, ctx: BatchContext) -> None:
        """Release the summaries of suppression windows that closed in wall time, and
        count what the engine counted."""
        engine = self.engine
        ctx.alerts.extend(engine.suppressor.due(engine.watermarks))
        for rule_id, n in engine.matched.items():
            ctx.count("rule_matches", n, rule_id=rule_id)
        engine.matched.clear()
        ctx.count("alerts_suppressed", engine.suppressor.suppressed)
        engine.suppressor.suppressed = 0
        for name, metric, total in (
            ("late", "rule_late_events", engine.late_events),
            ("evicted", "rule_window_evictions", engine.window_evictions),
            ("reload_failures", "rules_reload_failures", self.source.reload_failures),
        ):
            ctx.count(metric, max(0, total - self._seen[name]))
            self._seen[name] = total
        ctx.gauges["rules_enabled"] = len(engine.rules)

    def check_reload(self) -> None:
        """Reload when a file changed or a reload was requested (SIGHUP)."""
        now = time.monotonic()
        if not self.reload_requested and now - self._checked_at < self.config.reload_check_s:
            return
        self._checked_at = now
        forced, self.reload_requested = self.reload_requested, False
        if not self.source.changed() and not forced:
            return
        self.reload()

    def reload(self) -> bool:
        """Load the rule files again; on failure the rules in force stay."""
        try:
            engine = self._engine(self.source.load())
            reset = engine.adopt_state(self.engine)
        except RuleError as exc:
            self.source.reload_failures += 1
            log.error("rules not reloaded, the previous rules stay in force:\n%s", exc)
            return False
        except Exception as exc:  # a fault of ours must not stop detection either
            self.source.reload_failures += 1
            log.exception(
                "rules not reloaded (%s: %s), the previous rules stay in force",
                type(exc).__name__,
                exc,
            )
            return False
        self.engine = engine
        log.info(
            "rules reloaded: %d enabled%s",
            len(engine.rules),
            f"; windows restarted for {', '.join(reset)}" if reset else "",
        )
        return True
