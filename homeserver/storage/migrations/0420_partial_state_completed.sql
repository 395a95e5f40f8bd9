-- When a partial-state room's whole state was merged, as a position of the events
-- stream taken by the merge's transaction (federation/membership/partial_state.py).
-- /sync leaves a partial-state room out of a sync that does not lazy-load members
-- (its state lacks the omitted members, and the merge fills them in place, so no
-- later sync would carry them); an incremental sync whose token is before this
-- position sends the room as newly joined, with its whole state. One row per room
-- (a later merge of the same room replaces it).
CREATE TABLE partial_state_completed (
    room_nid BIGINT PRIMARY KEY REFERENCES rooms (room_nid),
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX partial_state_completed_by_position ON partial_state_completed (stream_ordering);
