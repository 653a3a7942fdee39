"""``auditpipe export``: a time range of stored events and alerts as OCSF (Parquet laid
out for security data lakes, or JSON lines) or ECS JSON lines."""
