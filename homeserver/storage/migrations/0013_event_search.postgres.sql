-- Full-text search over the searchable keys of unencrypted events
-- (content.body, content.name, content.topic), PostgreSQL flavour: a
-- tsvector per event with a GIN index. m.room.encrypted content is never
-- indexed: it has no plaintext. "key" says which content key the text is.
CREATE TABLE event_search (
    event_nid BIGINT PRIMARY KEY REFERENCES events (event_nid),
    key TEXT NOT NULL,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_fts ON event_search USING GIN (vector);
