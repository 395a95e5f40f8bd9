-- "Jump to date" (GET /rooms/{roomId}/timestamp_to_event and its federation
-- twin) finds a room's event nearest a timestamp: without this index that is
-- a scan of the room's whole history.
CREATE INDEX events_room_ts ON events (room_nid, origin_server_ts);
