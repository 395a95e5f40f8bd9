-- Rooms joined with partial state (server-server send_join with omit_members): the
-- resident left the membership events out, so this server holds the room's state
-- without most members until a background resync fetches the whole state at the
-- join event (federation/membership/partial_state.py). The row is the durable
-- marker: written before the join is persisted, deleted once the missing members
-- are merged, so a restart resumes the resync. servers_in_room (a JSON list, from
-- the send_join answer) is who the room's events and EDUs go to meanwhile, since
-- our own member list cannot tell yet.
CREATE TABLE partial_state_rooms (
    room_nid BIGINT PRIMARY KEY REFERENCES rooms (room_nid),
    join_event_id TEXT NOT NULL,
    joined_via TEXT NOT NULL,
    servers_in_room TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
