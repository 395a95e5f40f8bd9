-- Third-party identifiers (email addresses) of local accounts, the sessions that
-- validate them, and single-use login tokens (client-server API, "Adding Account
-- Administrative Contact Information" and "POST /login/get_token").
--
-- user_threepids: one row per address; the primary key makes an address belong
-- to at most one account (M_THREEPID_IN_USE). Addresses are stored canonical
-- (lower case), so the key compares them the way mail does in practice.
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    validated_at BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_by_user ON user_threepids (user_nid);

-- A validation session (the `sid` of requestToken). One per (client_secret,
-- medium, address), so a retried requestToken with the same send_attempt finds
-- it and sends nothing. Only the SHA-256 of the emailed token is kept; a new
-- send_attempt replaces it. validated_ts is set once the token came back.
CREATE TABLE threepid_validation_sessions (
    session_id TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    last_send_attempt BIGINT NOT NULL,
    token_hash TEXT NOT NULL,
    token_expires_ts BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    validated_ts BIGINT,
    UNIQUE (client_secret, medium, address)
);

-- Tokens of POST /login/get_token for m.login.token: hashed, single use (a login
-- deletes its row), short-lived.
CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY,
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);

-- What a UIA stage established, by stage (the validated email of
-- m.login.email.identity), for the operation that completes the session.
ALTER TABLE uia_sessions ADD COLUMN stage_json TEXT;
