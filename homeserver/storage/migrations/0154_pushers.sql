-- HTTP pushers (client-server "Push Notifications": POST /pushers/set).
--
-- A pusher is identified by (app_id, pushkey, user_id): the same device
-- token may be registered by several users only when they ask to `append`.
-- device_id is the device whose access token set it: a password change that
-- logs other devices out deletes their pushers too, as does deleting the
-- device. data_json is kept as given (`url` and `format` are read by the
-- sender; the rest goes to the push gateway unchanged).

CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data_json TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (app_id, pushkey, user_id)
);

CREATE INDEX pushers_by_user ON pushers (user_id);
