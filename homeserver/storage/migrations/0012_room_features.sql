-- Room features beyond the event graph: relations, content reports, and the
-- common part of the search index (the engine-specific full-text index is in
-- 0013_event_search.<engine>.sql).

-- One row per event that relates to another (content."m.relates_to" with a
-- rel_type): threads, edits, references, annotations. Written in the same
-- transaction as the event, so /relations and bundled aggregations never
-- miss a child. relates_to_id is text because over federation a child can
-- arrive before its parent. A redaction deletes the row (a redacted event
-- loses its m.relates_to). key is the annotation key (reactions).
CREATE TABLE event_relations (
    event_nid BIGINT PRIMARY KEY REFERENCES events (event_nid),
    event_id TEXT NOT NULL,
    room_nid BIGINT NOT NULL REFERENCES rooms (room_nid),
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    aggregation_key TEXT
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type);
CREATE INDEX event_relations_event_id ON event_relations (event_id);

-- Content reports for the server's admins (spec: "Reporting content").
-- event_id NULL: the whole room is reported; room_id NULL: a user is.
CREATE TABLE content_reports (
    report_id {{SERIAL_PK}},
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    target_user_id TEXT,
    reason TEXT,
    score BIGINT,
    received_ts BIGINT NOT NULL
);
CREATE INDEX content_reports_ts ON content_reports (received_ts);
