-- Remote servers' key responses kept per key id (server-server "Querying Keys
-- Through Another Server").
--
-- server_key_responses (0040) keeps only the latest response of a server.
-- A notary must go on vouching for a key the origin has since dropped (it
-- still verifies old events), and must not let a later response that lacks
-- the key make it forget it. So every verified response is also kept here
-- under each key id it publishes; a query for a key id answers with the
-- latest response that carried that key.

CREATE TABLE server_key_responses_by_key (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
