-- Server administration (issue 14): registration tokens kept in the
-- database, rooms blocked by an admin, room shutdowns and erased users.

-- Registration tokens created through the admin API (config tokens in
-- registration.tokens keep working and are unlimited). uses_allowed NULL:
-- unlimited; expiry_time NULL: never expires (milliseconds since the epoch).
-- completed counts finished registrations; "pending" is counted from the
-- table below, so an abandoned registration frees its use when its
-- user-interactive auth session would have expired.
CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    completed BIGINT NOT NULL DEFAULT 0,
    expiry_time BIGINT,
    created_ts BIGINT NOT NULL
);

-- A user-interactive auth session that passed the token stage holds one
-- use of its token until it registers (then completed + 1) or expires.
CREATE TABLE registration_token_pending (
    session_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX registration_token_pending_token ON registration_token_pending (token);

-- Rooms no local user may join, be invited to or knock on. Keyed by room id
-- text, not room_nid: an admin may block a room this server has never seen.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    blocked_by TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- Room shutdowns (DELETE /_synapse/admin/v2/rooms/{roomId}) and their
-- outcome, for the delete_status endpoints. result is the JSON of
-- shutdown_room (kicked_users, failed_to_kick_users, local_aliases, ...).
CREATE TABLE room_shutdowns (
    delete_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL,
    result TEXT NOT NULL,
    started_ts BIGINT NOT NULL
);
CREATE INDEX room_shutdowns_room ON room_shutdowns (room_id, started_ts);

-- Users deactivated with erase: true (the admin API reports "erased").
CREATE TABLE erased_users (
    user_id TEXT PRIMARY KEY,
    erased_ts BIGINT NOT NULL
);
