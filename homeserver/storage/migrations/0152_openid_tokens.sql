-- OpenID tokens (client-server API "OpenID"; server-server "OpenID").
--
-- A user asks for a short-lived token to prove their identity to a third
-- party (an integration manager, a widget); the third party asks this
-- server's /_matrix/federation/v1/openid/userinfo who holds it. Only the
-- token's SHA-256 is kept, like access tokens: the database alone cannot be
-- used to impersonate anyone. Expired rows are deleted when tokens are issued.

CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
