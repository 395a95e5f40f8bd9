-- The user directory (POST /user_directory/search) by default finds the users
-- who share a room with the searcher or sit in a "public" room: one whose
-- join rule is public or whose history is world_readable (as Synapse's
-- default, and the privacy-friendly choice). Both values are kept on the
-- room row, updated in the transaction that changes the room's current state,
-- so a search is one indexed query and a change costs one UPDATE, never a
-- rebuild. directory_flags_known = 0 marks rooms from before this migration,
-- which a background job fills in once.
ALTER TABLE rooms ADD COLUMN join_rule TEXT;
ALTER TABLE rooms ADD COLUMN history_visibility TEXT;
ALTER TABLE rooms ADD COLUMN directory_flags_known INTEGER NOT NULL DEFAULT 0;

-- The display name of the member event, so that remote users (who have no
-- row in users) are found by their name, not only by their user id.
ALTER TABLE room_memberships ADD COLUMN displayname TEXT;
