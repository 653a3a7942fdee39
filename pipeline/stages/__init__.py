"""The worker's stages, in data-flow order: decode -> validate -> (dedup, enrich, redact,
policy, rules: later) -> sink. Each stage takes a batch of events and returns the events
that go on; what it rejects it hands to the batch's dead letters, with a reason."""
