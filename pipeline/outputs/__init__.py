"""Sinks: where processed events leave the pipeline."""
