-- MSC2753 peeking: a device follows a world_readable room it has not joined;
-- its /sync then carries the room under rooms.peek. Per device, as the MSC
-- says (another device of the user does not see the room). delivered_at is
-- the events position of the first sync answer that carried the room (NULL:
-- not yet): a sync from a token before it gets the room's history, as for a
-- newly joined room; later ones only what is new.
CREATE TABLE room_peeks (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    delivered_at BIGINT,
    PRIMARY KEY (user_id, device_id, room_nid)
);
