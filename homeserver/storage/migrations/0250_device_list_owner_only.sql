-- A change of a user's user-signing key concerns that user alone (spec: the
-- user-signing key is seen only by its owner, in /keys/query): such a row of the
-- device-list stream puts the user in their own device_lists.changed, not in
-- the lists of the users who share a room with them. 0 or 1 (both engines).
ALTER TABLE e2e_device_list_stream ADD COLUMN owner_only INTEGER NOT NULL DEFAULT 0;
