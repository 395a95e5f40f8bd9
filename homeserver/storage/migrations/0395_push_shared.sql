-- One notification row per event for the local members who share its default outcome
-- (push/notifications.py, issue 15): event_push_actions held a row per notified member,
-- a thousand rows per message in a thousand-member room, and writing them was most of
-- what a send cost on SQLite as rooms grew.
--
-- event_push_shared: the outcome of an event for every local member joined at it
-- (in the state before it) who is neither its sender nor has a row of their own in
-- event_push_actions for it. Such a row is an exception: the member's own outcome
-- (a highlight, their own rules, a muted room), kept even if it notifies nobody
-- (notify = 0 and highlight = 0), so that it hides the shared row from them. An event
-- whose shared outcome notifies nobody has no shared row. sender is kept because
-- the sender is joined but never notified of their own event.
CREATE TABLE event_push_shared (
    event_nid BIGINT PRIMARY KEY REFERENCES events (event_nid),
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    stream_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    notify INTEGER NOT NULL,
    highlight INTEGER NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE INDEX event_push_shared_room ON event_push_shared (room_nid, stream_ordering);

-- Who a shared row covers: the stream positions at which a local member was joined,
-- as the push evaluator saw them (start_so <= position < end_so; end_so NULL while
-- still joined). The evaluator runs in stream order and, before it writes an event's
-- rows, opens and closes spans so that the open ones are exactly the local members
-- joined at that event: a span only changes at positions after every shared row
-- already written, so the members a row covers never change afterwards. Spans and
-- rows move with the evaluator's cursor, in one transaction (migration 0280).
CREATE TABLE push_member_spans (
    user_id TEXT NOT NULL,
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    start_so BIGINT NOT NULL,
    end_so BIGINT,
    PRIMARY KEY (user_id, room_nid, start_so)
);
CREATE INDEX push_member_spans_open ON push_member_spans (room_nid) WHERE end_so IS NULL;
