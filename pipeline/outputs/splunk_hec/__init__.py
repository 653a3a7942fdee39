"""Alerts to Splunk's HTTP Event Collector (``/services/collector/event``), with optional
indexer acknowledgement."""
