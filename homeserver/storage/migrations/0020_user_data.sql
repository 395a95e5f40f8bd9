-- Per-user data: account data (global and per room, room tags live here as
-- m.tag), filters, push rules and presence.
--
-- Stream positions: /sync asks "what changed for this user between two
-- positions". Each stream has one counter row in user_data_streams; a writer
-- bumps it with UPDATE ... RETURNING inside its own transaction, which holds
-- the row lock until commit. So positions are handed out in commit order and
-- every position <= the counter's committed value belongs to a committed
-- change: a reader never skips a change that commits late.

CREATE TABLE user_data_streams (
    stream TEXT PRIMARY KEY,
    pos BIGINT NOT NULL
);
INSERT INTO user_data_streams (stream, pos) VALUES ('account_data', 0);
INSERT INTO user_data_streams (stream, pos) VALUES ('presence', 0);

-- One row per (user, room, type) with the latest content and the position
-- of its latest change. room_id is '' for global account data (a NULL would
-- not take part in the primary key on both engines). Incremental sync reads
-- rows with stream_pos in (from, to]; the index serves that per user.
CREATE TABLE account_data (
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_nid, room_id, type)
);
CREATE INDEX account_data_by_pos ON account_data (user_nid, stream_pos);

-- Filters are immutable once uploaded; the id is the row number, which never
-- starts with '{' (that marks an inline filter).
CREATE TABLE user_filters (
    filter_nid {{SERIAL_PK}},
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    filter_json TEXT NOT NULL
);

-- User-defined push rules. position orders rules within a kind (lower is more
-- important); it is rewritten for the kind when a rule is placed with
-- before/after, which keeps the arithmetic trivial for the handful of rules a
-- user has. conditions is JSON (override/underride), pattern is for content.
CREATE TABLE push_rules (
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    conditions TEXT,
    pattern TEXT,
    actions TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (user_nid, kind, rule_id)
);

-- A user's changes to server-default rules: only what differs from the
-- default is stored (NULL keeps the default), so a new server version's
-- default rules reach every user who did not touch them.
CREATE TABLE push_rule_default_overrides (
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    rule_id TEXT NOT NULL,
    enabled INTEGER,
    actions TEXT,
    PRIMARY KEY (user_nid, rule_id)
);

-- Latest presence per user; stream_pos of its latest change for /sync.
CREATE TABLE presence (
    user_nid BIGINT PRIMARY KEY REFERENCES users (user_nid),
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL
);
CREATE INDEX presence_by_pos ON presence (stream_pos);
