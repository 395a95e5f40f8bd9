-- Full-text search over the searchable keys of unencrypted events
-- (content.body, content.name, content.topic), SQLite flavour: an FTS5
-- table whose rowid is the event_nid. m.room.encrypted content is never
-- indexed: it has no plaintext. "key" says which content key the text is.
CREATE VIRTUAL TABLE event_search USING fts5(
    value, key UNINDEXED, tokenize = 'porter unicode61'
);
