-- Simplified sliding sync (MSC4186) connections, kept in the database so that
-- a restart, or another worker process, continues a client's connection.
--
-- A connection is one (user, device, conn_id). Each answer that sent
-- something gets a new position (the opaque ``pos`` the client sends
-- back); a position records the stream token it was built at, the
-- connection's sticky room subscriptions, the list counts last sent, and
-- (in sliding_sync_rooms) for every room ever sent on the connection how far
-- its timeline was sent and with which required_state, so the next answer
-- sends only what is new. A position's rooms are copied to the next
-- position (INSERT ... SELECT, one statement) rather than shared, so the
-- client may repeat a request with an older ``pos`` (its answer was lost)
-- and get the same answer again; positions before the one a client sends
-- are deleted then, since the client has proved it received the later one.
CREATE TABLE sliding_sync_connections (
    conn_nid {{SERIAL_PK}},
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    last_used_ts BIGINT NOT NULL,
    UNIQUE (user_id, device_id, conn_id)
);

CREATE TABLE sliding_sync_positions (
    pos_nid {{SERIAL_PK}},
    conn_nid BIGINT NOT NULL REFERENCES sliding_sync_connections (conn_nid),
    stream_token TEXT NOT NULL,
    subscriptions TEXT NOT NULL,
    list_counts TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX sliding_sync_positions_conn ON sliding_sync_positions (conn_nid, pos_nid);

-- sent_upto: the events stream position up to which the room's timeline
-- was sent; membership: the user's membership it was sent with (a change,
-- e.g. invite -> join, sends the room afresh); required_state: the
-- canonical JSON of the required_state it was sent with; timeline_limit: the
-- timeline_limit it was sent with (a larger one later sends a longer timeline,
-- "unstable_expanded_timeline", as when a room list entry is opened).
CREATE TABLE sliding_sync_rooms (
    pos_nid BIGINT NOT NULL REFERENCES sliding_sync_positions (pos_nid),
    room_id TEXT NOT NULL,
    sent_upto BIGINT NOT NULL,
    membership TEXT NOT NULL,
    required_state TEXT NOT NULL,
    timeline_limit INTEGER NOT NULL,
    PRIMARY KEY (pos_nid, room_id)
);

-- bump_stamp: the newest event of a few types per room, for many rooms in
-- one query (rooms sorted by recency).
CREATE INDEX events_room_type_stream ON events (room_nid, event_type, stream_ordering);
