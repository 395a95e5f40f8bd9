-- Remote users whose whole device list must be fetched again (GET /user/devices),
-- asked for by a process that does not run the background jobs while several Myelin
-- processes share the database (homeserver/scaleout.py). The background lease's
-- holder runs the resyncs and deletes each row once its resync succeeded, so a need
-- outlives a lost bus message, a failed fetch and the holder's death (its successor
-- picks the rows up when it gains the lease). A single process never writes here.
CREATE TABLE federation_device_list_resyncs (
    user_id TEXT PRIMARY KEY,
    requested_ms BIGINT NOT NULL
);
