-- Accounts: users, devices, access and refresh tokens, user-interactive auth.
--
-- Users get a numeric id (user_nid) that every other table references, so
-- membership and state tables store 8-byte integers rather than full mxids.
-- Tokens are never stored: only the SHA-256 of a random 256-bit token, so a
-- copy of the database does not let anyone act as a user.

CREATE TABLE users (
    user_nid {{SERIAL_PK}},
    user_id TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    is_guest INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    displayname TEXT,
    avatar_url TEXT,
    created_ts BIGINT NOT NULL
);

CREATE TABLE devices (
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_nid, device_id)
);

-- expires_ts NULL: the token does not expire (clients that do not ask for
-- refresh tokens). refresh_hash pairs an access token with its refresh token.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT
);
CREATE INDEX access_tokens_by_device ON access_tokens (user_nid, device_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_nid BIGINT NOT NULL REFERENCES users (user_nid),
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens (user_nid, device_id);

-- User-interactive auth sessions: which stages are done, and the request
-- parameters the session was started for (so a session cannot be replayed
-- against another operation).
CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    operation TEXT NOT NULL,
    user_nid BIGINT,
    completed TEXT NOT NULL
);

-- Nonces for the shared-secret admin registration API: single use, short-lived.
CREATE TABLE registration_nonces (
    nonce TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL
);
