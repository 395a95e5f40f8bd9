-- Which identity server each of a user's addresses was bound on through this
-- homeserver (POST /account/3pid/bind). Kept so that /account/3pid/unbind and
-- /delete without an id_server, and deactivation, can ask exactly those servers
-- to remove the binding (spec: "the homeserver should use the identity server
-- the 3PID was bound with"). Users by id, not nid: the row outlives nothing but
-- must be found by the user id the identity server knows.

CREATE TABLE threepid_id_server_bindings (
    user_id TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);
