-- Client IP retention (config privacy.client_ip_retention): an hourly job clears
-- devices.last_seen_ip and last_seen_user_agent once last_seen_ts is older than
-- the retention period. The partial index holds only rows that still carry an
-- IP, so each pass reads just the rows it may clear, not every device.

CREATE INDEX devices_last_seen_ip_ts ON devices (last_seen_ts) WHERE last_seen_ip IS NOT NULL;
