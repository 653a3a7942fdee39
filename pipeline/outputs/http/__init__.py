"""Alerts as JSON lines POSTed to any HTTPS collector (a webhook, an Elastic
``_bulk``-style NDJSON endpoint, a SOAR); also the transport of ``splunk_hec``."""
