-- Federation sender, receiver and remote device-list cache.
--
-- federation_outbox: everything we must deliver to another server (PDUs and
-- EDUs), written before any attempt to send it (DESIGN principle 6), so a
-- restart or a dead peer loses nothing. One row per (destination, item):
-- a PDU for a room spread over N servers is N rows, each deleted when its
-- destination acknowledged the transaction that carried it. kind is 'pdu'
-- or 'edu'. coalesce_key is set for EDUs where only the latest matters
-- (typing per room and user, presence per user): enqueueing one deletes the
-- older unsent row with the same (destination, edu_type, coalesce_key).
-- body_json is the PDU, or the EDU content, as opaque JSON text.
-- (To-device EDUs stay in e2e_to_device_outbox, written by the e2ee area in
-- the same transaction as the client's request; the sender drains both.)
CREATE TABLE federation_outbox (
    outbox_id {{SERIAL_PK}},
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    edu_type TEXT,
    coalesce_key TEXT,
    body_json TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX federation_outbox_dest ON federation_outbox (destination, kind, outbox_id);
CREATE INDEX federation_outbox_coalesce ON federation_outbox (destination, edu_type, coalesce_key);

-- Inbound transactions already processed, with the answer we gave: a peer
-- that retries PUT /send/{txnId} (it never saw our answer) gets the same
-- answer and nothing is processed twice. Old rows may be pruned by age.
CREATE TABLE federation_inbound_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Remote users whose device list we keep in sync ("tracked"), with the
-- stream_id of the last m.device_list_update applied: an update whose
-- prev_id does not contain it shows a gap, and we resync the whole list
-- through /user/devices/{userId}.
CREATE TABLE federation_remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    synced_ts BIGINT NOT NULL
);

-- Cached device keys of tracked remote users, as the origin served them
-- (keys_json is the signed device_keys object, opaque here; NULL for a
-- device that has no keys).
CREATE TABLE federation_remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    keys_json TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Cached cross-signing keys of tracked remote users (usage: master or
-- self_signing; user_signing keys never leave their server).
CREATE TABLE federation_remote_cross_signing (
    user_id TEXT NOT NULL,
    usage TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, usage)
);
