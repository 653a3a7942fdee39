"""What the SIEM destinations (``outputs/splunk_hec``, ``outputs/syslog``,
``outputs/http``) share: the two ways a delivery fails, the retry with back-off and
jitter, the TLS context, the record shapes by format."""
