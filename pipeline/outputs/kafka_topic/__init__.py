"""The kafka destination of ``auditpipe forward``: shaped alerts (OCSF by default) as
JSON messages on a topic, for SIEMs and lakes that read Kafka."""
