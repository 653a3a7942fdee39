"""Alerts to a syslog receiver (rsyslog, syslog-ng, QRadar, ArcSight): RFC 5424 messages
over UDP (RFC 5426), TCP with octet counting (RFC 6587) or TLS (RFC 5425)."""
