-- The User-Agent a device last used, next to its last_seen_ip/last_seen_ts,
-- for GET /admin/whois/{userId} (client-server "Server Administration"),
-- whose ConnectionInfo reports ip, last_seen and user_agent. Updated with
-- the same throttle as the others; NULL until the device is next seen.

ALTER TABLE devices ADD COLUMN last_seen_user_agent TEXT;
