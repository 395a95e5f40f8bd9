-- History purges, room purges, retention and erasure (issue 14).
--
-- history_purges: one row per purge (POST /_synapse/admin/v1/purge_history,
-- and each room a retention pass purges), for the purge_history_status
-- endpoint. A purge runs in batches outside the request; a row left 'active'
-- by a restart is marked 'failed' at start-up, so no status lies forever.
CREATE TABLE history_purges (
    purge_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    started_ts BIGINT NOT NULL
);
CREATE INDEX history_purges_room ON history_purges (room_id, started_ts);

-- Erasing an account walks the events its user sent: without this index
-- that is a scan of every event the server holds.
CREATE INDEX events_sender ON events (sender, event_nid);
