-- A rejoin of a room this server left can be a partial-state join too (the spec's
-- omit_members does not depend on whether we were in the room before). The room
-- then has state groups from its earlier membership: the resync's merge must add
-- the missing members only to the groups made since this join (the state at the old
-- events stays as it was), which are the ones numbered above min_state_group - 1,
-- the highest group id when the marker was written (ids only grow). 0: every group
-- (a first join, and markers from before this migration).
ALTER TABLE partial_state_rooms ADD COLUMN min_state_group BIGINT NOT NULL DEFAULT 0;
