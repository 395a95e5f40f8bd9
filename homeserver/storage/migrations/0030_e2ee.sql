-- End-to-end encryption relay: device keys, one-time and fallback keys,
-- cross-signing keys and signatures, the device-list stream, the to-device
-- inbox and outbox, and server-side key backups.
--
-- Users are named by their full user id here, not by user_nid: device keys,
-- cross-signing keys and device-list changes also describe users of other
-- servers (cached by federation), who have no local account row.
--
-- Everything holding key material or message content stores it as opaque
-- JSON text; nothing indexes into it.

-- Stream heads. Allocating a position is "UPDATE ... SET pos = pos + n
-- RETURNING pos" inside the writing transaction: the row lock makes
-- PostgreSQL commit positions in the order they were handed out, so a reader
-- that has seen position N never later finds a smaller one appear (the
-- classic gap of sequence-allocated streams). SQLite has one writer anyway.
CREATE TABLE e2e_stream_heads (
    stream TEXT PRIMARY KEY,
    pos BIGINT NOT NULL
);
INSERT INTO e2e_stream_heads (stream, pos) VALUES ('device_lists', 0);
INSERT INTO e2e_stream_heads (stream, pos) VALUES ('to_device', 0);

-- A device's identity keys as uploaded (signed by the device itself).
-- ed25519/curve25519 are copied out so a changed identity key is detected
-- without parsing the JSON.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ed25519 TEXT NOT NULL,
    curve25519 TEXT,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: claimed exactly once (a claim deletes the row it returns).
-- otk_id gives the upload order the spec asks claims to follow.
CREATE TABLE e2e_one_time_keys (
    otk_id {{SERIAL_PK}},
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    UNIQUE (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, otk_id);

-- At most one fallback key per (device, algorithm); reused until replaced.
-- used = 1 once it has been handed out by a claim (reported through /sync).
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: one current key per (user, usage) where usage is
-- master, self_signing or user_signing. public_key is the unpadded base64
-- ed25519 key, which is also its key id in /keys/signatures/upload.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    usage TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, usage)
);

-- Signatures added later by /keys/signatures/upload, kept apart from the
-- signed objects so re-uploads of the objects never lose them. target_key_id
-- is a device id or a cross-signing public key of target_user_id.
CREATE TABLE e2e_cross_signing_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device-list stream: one row per change of a user's devices or
-- cross-signing keys. device_id is NULL for cross-signing changes.
-- /keys/changes and /sync device_lists read positions (from, to].
CREATE TABLE e2e_device_list_stream (
    stream_pos BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT
);
CREATE INDEX e2e_device_list_stream_user ON e2e_device_list_stream (user_id, stream_pos);

-- To-device inbox: messages waiting for one local device, in arrival order
-- (stream_pos from the 'to_device' head). Rows are deleted only when the
-- device acknowledges them by syncing with a later token.
CREATE TABLE e2e_to_device_inbox (
    stream_pos BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX e2e_to_device_inbox_device ON e2e_to_device_inbox (user_id, device_id, stream_pos);

-- Transaction ids already handled, per sending device: a retried
-- PUT /sendToDevice is answered without queueing the messages again.
CREATE TABLE e2e_to_device_txns (
    sender TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (sender, sender_device, txn_id)
);

-- To-device messages for devices on other servers, persisted before the
-- request is acknowledged and sent later as m.direct_to_device EDUs by the
-- federation sender (one row per request and destination; edu_json is the
-- EDU content, opaque here).
CREATE TABLE e2e_to_device_outbox (
    outbox_id {{SERIAL_PK}},
    destination TEXT NOT NULL,
    edu_json TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX e2e_to_device_outbox_dest ON e2e_to_device_outbox (destination, outbox_id);

-- Server-side key backup versions. A deleted version keeps its row
-- (deleted = 1) so deleting it again succeeds, as the spec asks, and its
-- number is never reused. etag counts changes of the stored keys.
CREATE TABLE e2e_backup_versions (
    version {{SERIAL_PK}},
    user_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX e2e_backup_versions_user ON e2e_backup_versions (user_id, version);

-- One backed-up Megolm session key; the metadata columns drive the spec's
-- replacement rules, session_data is opaque ciphertext.
CREATE TABLE e2e_backup_keys (
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified INTEGER NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (version, room_id, session_id)
);
