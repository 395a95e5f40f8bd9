-- A purge takes the events it keeps (state events, local events) off the
-- timeline by clearing stream_ordering. purged_stream keeps the position they
-- had: an incremental /sync from a token older than the purge still finds the
-- state changes made in between (the "state" block of a limited timeline),
-- which it reads by stream position. Only purged rows have it, hence the
-- partial index.
ALTER TABLE events ADD COLUMN purged_stream BIGINT;
CREATE INDEX events_room_purged_stream ON events (room_nid, purged_stream)
    WHERE purged_stream IS NOT NULL;
