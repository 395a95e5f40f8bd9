-- Application services (Application Service API): where each service's
-- transactions stand.
--
-- appservice_state: one row per registration id. events_pos is the last
-- position of the global event stream already looked at for the service
-- (events after it are still to be sent); last_txn_id numbers its
-- transactions. A service that appears in the configuration starts at the
-- stream's current position (no history is replayed).
--
-- appservice_txns: a transaction built but not yet acknowledged. It is
-- written, with the cursor move, in one database transaction, and deleted
-- when the service answers 200; until then every retry sends the same
-- txn_id with the same body_json (the spec's idempotency contract).

CREATE TABLE appservice_state (
    as_id TEXT PRIMARY KEY,
    events_pos BIGINT NOT NULL,
    last_txn_id BIGINT NOT NULL
);

CREATE TABLE appservice_txns (
    as_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    body_json TEXT NOT NULL,
    PRIMARY KEY (as_id, txn_id)
);
