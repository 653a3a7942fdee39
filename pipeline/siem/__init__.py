"""SIEM shapes: pure mappings of audit events and alerts to the records SIEMs read.

``ocsf`` (OCSF 1.8.0 classes and the Detection Finding), ``ecs`` (Elastic Common
Schema), ``cef`` (ArcSight Common Event Format, for syslog receivers). Each takes the
event or alert dict as the worker writes it (``schemas/*.avsc``) and returns a new
value; none does I/O. ``common`` holds what the three share (times, severities, the
ATT&CK tags of the rules). The field tables are in docs/siem.md.
"""
