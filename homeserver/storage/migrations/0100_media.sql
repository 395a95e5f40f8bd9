-- Media repository (spec: client-server "Content repository", server-server
-- "Content Repository").
--
-- One row per media id, local or remote (server_name is the origin in the
-- mxc:// URI). The bytes are on disk under their SHA-256 (content_hash), so
-- identical uploads share one file; the file is deleted when no media or
-- thumbnail row references its hash any more.
--
-- A local row created by /media/v1/create has no content_hash until its
-- upload arrives; created_ts bounds how long it may wait. stored_ts is when
-- the bytes arrived here (local upload, or remote cache fill): the legacy
-- unauthenticated endpoints serve only media stored before the configured
-- "freeze" cut-off, as the spec asks. last_access_ts drives retention and the
-- least-recently-used eviction of the remote cache. user_id is the uploader
-- of local media (quota, create/upload ownership), NULL for remote media.
CREATE TABLE media (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    user_id TEXT,
    content_hash TEXT,
    size BIGINT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    created_ts BIGINT NOT NULL,
    stored_ts BIGINT,
    last_access_ts BIGINT NOT NULL,
    quarantined INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server_name, media_id)
);
CREATE INDEX media_by_user ON media (user_id);
CREATE INDEX media_by_hash ON media (content_hash);
CREATE INDEX media_by_access ON media (last_access_ts);

-- Thumbnails made from a media's bytes, one per (size, method, animated),
-- cached so each is generated once; also stored by content hash.
CREATE TABLE media_thumbnails (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    animated INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (server_name, media_id, width, height, method, animated)
);
CREATE INDEX media_thumbnails_by_hash ON media_thumbnails (content_hash);
