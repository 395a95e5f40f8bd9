-- History backfilled while a room is joined with partial state, ahead of the resync:
-- the state at its gap (the origin's /state_ids) names thousands of member events the
-- resync is fetching and checking at that moment. Rather than wait for them (or fetch
-- them a second time), the history is stored on the part of that state we hold (its
-- auth events, the room's non-member state) and the rest is named here: the resync's
-- merge adds those events to the history's snapshot group, in its own transaction
-- (federation/membership/partial_state.py). missing: a JSON list of event ids;
-- origin: the server whose answer it was (asked for what the resync did not bring).
-- No foreign key to rooms: a room purged meanwhile leaves a row no merge reads.
CREATE TABLE partial_state_history (
    room_nid BIGINT NOT NULL,
    gap_event_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    missing TEXT NOT NULL,
    PRIMARY KEY (room_nid, gap_event_id)
);
