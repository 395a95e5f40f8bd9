-- Notifications: the outcome of push rule evaluation for each local user
-- and each event that notifies them (spec: "Push Notifications",
-- "Receiving notifications", GET /notifications, /sync unread_notifications).
--
-- Rows are written once, when the event is persisted, so /sync counts
-- unread notifications with one indexed range count per room (rows after
-- the user's read receipt) instead of re-running push rules over history.
-- Only events whose actions notify or highlight get a row. thread_id is
-- 'main' for events outside a thread (spec: threaded read receipts), so
-- per-thread counts are a GROUP BY. actions is the JSON array of the
-- matching rule, shown by GET /notifications.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    event_nid BIGINT NOT NULL REFERENCES events (event_nid),
    stream_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    notify INTEGER NOT NULL,
    highlight INTEGER NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_nid)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_nid, stream_ordering);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_ordering);
