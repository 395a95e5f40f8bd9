-- History fetched from other servers for /messages (server-server /backfill).
--
-- Backfilled events are older than everything the room had, so they must not
-- take positions from the 'events' counter: /sync would show them as new.
-- They count down from 0 instead (-1, -2, ...): below every sync token, so
-- /sync never returns them, and unique like every stream_ordering.
INSERT INTO stream_positions (stream_name, position) VALUES ('backfill', 0);

-- /messages walks a room in topological order (depth, then stream_ordering
-- to break ties), so that backfilled history and late-arriving events sit
-- where the event graph puts them, not where their arrival put them.
CREATE INDEX events_room_topological ON events (room_nid, depth, stream_ordering);
