-- Which process resyncs a partial-state room (federation/membership/partial_state.py).
-- Any process that serves the client API can join a room with partial state, and the
-- resync runs in the process that joined; after a restart (or the death of that
-- process) exactly one process must take it up. The marker carries a claim: the
-- process name (``main`` or a worker's) and until when it holds it, renewed while its
-- resync runs (a third of worker_lease_ms at a time). A process takes a room only when
-- the claim is its own (a restarted process, same name) or has run out; an atomic
-- UPDATE decides between two that try at once.
ALTER TABLE partial_state_rooms ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE partial_state_rooms ADD COLUMN owner_until_ms BIGINT NOT NULL DEFAULT 0;
