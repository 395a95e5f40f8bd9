-- Read receipts (spec: client-server "Receipts", server-server "m.receipt").
--
-- Only the latest receipt per (room, receipt type, user, thread) is kept:
-- receipts are "up to" markers and both /sync and federation send deltas
-- that replace older ones, so history is never needed. thread_id is ''
-- for an unthreaded receipt (a primary key column cannot be NULL); the
-- API shows it as an absent thread_id.
--
-- Ids are the textual Matrix ids, not numeric ids: receipts arrive over
-- federation for remote users who have no row in users, and rooms are
-- referenced before the room tables exist in every deployment.
--
-- stream_pos orders changes for /sync and the federation sender. It is
-- taken from receipts_stream in the same transaction as the upsert; the
-- UPDATE locks that one row until commit, so positions become visible in
-- order and a reader never skips a position that commits late.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_by_room_stream ON receipts (room_id, stream_pos);
CREATE INDEX receipts_by_stream ON receipts (stream_pos);

CREATE TABLE receipts_stream (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO receipts_stream (id, pos) VALUES (1, 0);
