-- What a user-interactive auth session remembers besides its stages
-- (client-server API, "User-Interactive Authentication API").
--
-- request_json: the body of the request that started the session (without
-- `auth`), so a client may send only `auth` in later stages and the server
-- acts on the parameters it first gave (Synapse does so; Sytest checks it for
-- /register). A password in it is kept only as its hash.
-- result_json: for operations that may be retried with a completed session
-- (registration), what the operation produced, so a retry answers the same
-- user instead of failing or registering twice.

ALTER TABLE uia_sessions ADD COLUMN request_json TEXT;
ALTER TABLE uia_sessions ADD COLUMN result_json TEXT;
