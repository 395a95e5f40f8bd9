-- Leases: which process may do a job that only one process at a time may do
-- (send one shard of the federation outbox, run the background jobs), when
-- several Myelin processes share one PostgreSQL database (homeserver/storage/leases.py).
--
-- A lease is a row, not a PostgreSQL advisory lock, because the holder must be
-- able to tell how long it may still act without asking the database (it checks
-- before every federation transaction), and another process must be able to
-- take over a lease whose holder stopped renewing it (killed, frozen, cut off
-- from the database) without waiting for a TCP timeout. expires_ms is wall-clock
-- time in milliseconds; the holder renews it well before then. wanted_by is set
-- by the process a lease belongs to by configuration (a sender shard's home
-- process) while another holds it: the holder stops renewing it and lets it expire.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    wanted_by TEXT
);
