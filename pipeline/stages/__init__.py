"""The worker's stages, in data-flow order: decode -> validate -> dedup -> enrich ->
detect -> policy -> collapse -> redact, then the sink (``pipeline/outputs``). Each stage
takes a batch of events and returns the events that go on; what it rejects it hands to
the batch's dead letters with a reason, and every other side output (alerts, counts, the
events the policy kept back) is a value on the typed ``BatchContext`` (``base.py``)."""
