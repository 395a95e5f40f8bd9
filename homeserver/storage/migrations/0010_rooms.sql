-- Rooms, events, state and memberships: the room DAG on one server.
--
-- Built for big rooms: rooms, events and (type, state_key) pairs get numeric
-- ids (room_nid, event_nid, state_key_nid) so the state and membership
-- tables hold 8-byte integers instead of long strings. State is never copied
-- whole per event: see state_groups below.

-- One row per room this server knows. room_version drives every
-- version-dependent behaviour; is_public is the room directory visibility.
CREATE TABLE rooms (
    room_nid {{SERIAL_PK}},
    room_id TEXT NOT NULL UNIQUE,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL
);

-- Interned (type, state_key) pairs. Every state table keys on the number:
-- an m.room.member key of a long mxid is stored once, not once per snapshot.
CREATE TABLE state_keys (
    state_key_nid {{SERIAL_PK}},
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    UNIQUE (event_type, state_key)
);

-- Global counters that must survive a restart (the stream ordering of
-- events; later to-device, receipts, ...). Taking the next value is an
-- UPDATE inside the persisting transaction: on PostgreSQL the row lock is
-- held until commit, so positions become visible in order and a reader that
-- saw position N has seen every event up to N.
CREATE TABLE stream_positions (
    stream_name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO stream_positions (stream_name, position) VALUES ('events', 0);

-- Every event: the PDU exactly as signed (json), plus the columns queries
-- filter on. stream_ordering is the global order in which events became
-- visible to clients; NULL for outliers and rejected events, which clients
-- never see in timelines. state_group is the state *after* the event
-- (non-state events share their predecessor's group). prev_state_event_nid
-- is the state event this one replaced (for unsigned.prev_content).
CREATE TABLE events (
    event_nid {{SERIAL_PK}},
    event_id TEXT NOT NULL UNIQUE,
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    event_type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    stream_ordering BIGINT UNIQUE,
    outlier INTEGER NOT NULL DEFAULT 0,
    rejected_reason TEXT,
    soft_failed INTEGER NOT NULL DEFAULT 0,
    state_group BIGINT,
    prev_state_event_nid BIGINT,
    json TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_nid, stream_ordering);
CREATE INDEX events_room_depth ON events (room_nid, depth);

-- The DAG edges. prev_event_id is text: over federation an event may name
-- predecessors we do not have yet (they are fetched later).
CREATE TABLE event_edges (
    event_nid BIGINT NOT NULL REFERENCES events (event_nid),
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_nid, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- The room's forward extremities: events with no known successor. A new
-- local event cites all of them as prev_events.
CREATE TABLE forward_extremities (
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    event_nid BIGINT NOT NULL REFERENCES events (event_nid),
    PRIMARY KEY (room_nid, event_nid)
);

-- De-duplicated state. A group is its parent's state plus the entries in
-- state_group_entries (a delta); a group without a parent is a full
-- snapshot. delta_depth bounds the chain: past a limit a full snapshot is
-- written, so reading any state costs a bounded number of rows' walk.
-- event_nid NULL in an entry removes the key (only state resolution does that).
CREATE TABLE state_groups (
    state_group {{SERIAL_PK}},
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    prev_group BIGINT REFERENCES state_groups (state_group),
    delta_depth INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL REFERENCES state_groups (state_group),
    state_key_nid BIGINT NOT NULL,
    event_nid BIGINT,
    PRIMARY KEY (state_group, state_key_nid)
);

-- The current state of each room, kept beside the groups so that "what is
-- the topic now" or "who may I cite as auth events" is one indexed read.
CREATE TABLE current_state (
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    state_key_nid BIGINT NOT NULL,
    event_nid BIGINT NOT NULL REFERENCES events (event_nid),
    PRIMARY KEY (room_nid, state_key_nid)
);

-- Current membership per (room, user), for joined_rooms, members and sync.
-- stream_ordering of the membership event lets sync find rooms whose
-- membership changed since a token (joins, leaves, invites). forgotten is
-- set by /forget and cleared by a new membership.
CREATE TABLE room_memberships (
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_nid BIGINT NOT NULL REFERENCES events (event_nid),
    stream_ordering BIGINT NOT NULL,
    forgotten INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_nid, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);

-- Redactions, keyed by the redacted event's *id*, not nid: over federation
-- a redaction can arrive before the event it redacts, and must apply once
-- that event turns up.
CREATE TABLE redactions (
    redaction_event_nid BIGINT PRIMARY KEY REFERENCES events (event_nid),
    redacts_event_id TEXT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts_event_id);

-- Client transaction ids, so a retried PUT .../send/{type}/{txnId} returns
-- the first event instead of sending twice (scoped per device, as the spec says).
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

-- Local room aliases (#alias:our.server -> room).
CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_nid);
