-- Presence of users on other servers, as their server last told us in an
-- m.presence EDU. Apart from `presence` because remote users have no local
-- account (no user_nid); it shares the `presence` stream so /sync reads
-- local and remote changes in one range. last_active_ts is computed from
-- the EDU's last_active_ago when it arrived.
CREATE TABLE remote_presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL
);
CREATE INDEX remote_presence_pos ON remote_presence (stream_pos);
