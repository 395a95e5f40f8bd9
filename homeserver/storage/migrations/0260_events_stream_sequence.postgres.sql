-- Event stream positions from a sequence on PostgreSQL (issue 15): the
-- `stream_positions` row for 'events' made every event transaction in every
-- room queue behind one row lock until commit. A sequence hands out positions
-- without a lock; transactions may then commit out of order, and the events
-- store publishes to readers only positions below which nothing is still
-- uncommitted (homeserver/streams/positions.py). The sequence starts after
-- the newest position the row handed out; the row stays for SQLite, whose
-- single writer keeps using it.
CREATE SEQUENCE events_stream_ordering;
SELECT setval(
    'events_stream_ordering',
    GREATEST((SELECT position FROM stream_positions WHERE stream_name = 'events'), 1),
    (SELECT position FROM stream_positions WHERE stream_name = 'events') > 0
);
