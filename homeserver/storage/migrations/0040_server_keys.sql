-- Remote servers' signing keys (server-server "Retrieving server keys").
--
-- server_keys holds one row per (server, key id): the public key and the
-- time until which we may trust it. For a key in `verify_keys` that is the
-- lesser of the published valid_until_ts and fetch time + 7 days (rooms v5+
-- "signing key validity"); for a key in `old_verify_keys` it is its
-- expired_ts, so it still verifies events sent before it expired but never
-- a request made now. Rows are upserted on every fetch, so a key that moves
-- to old_verify_keys loses its longer validity at once.
--
-- server_key_responses keeps the last self-signed key response of each
-- server verbatim, so we can act as a notary (re-sign and return it) and
-- keep answering for a server that is offline.

CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

CREATE TABLE server_key_responses (
    server_name TEXT PRIMARY KEY,
    response_json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);
