-- MSC2228 self-destructing events: an event whose content names a time in
-- org.matrix.self_destruct_after is pruned (stored in its redacted form) at
-- that time. One row per event waiting, written with the event; the index
-- lets the expiry job find the next one to sleep until. Rows go when done.
CREATE TABLE event_expiry (
    event_nid BIGINT PRIMARY KEY REFERENCES events (event_nid),
    expiry_ts BIGINT NOT NULL
);
CREATE INDEX event_expiry_ts ON event_expiry (expiry_ts);
