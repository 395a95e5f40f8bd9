-- Device-list changes that only one user is told of (spec: the user-signing key,
-- and the signatures it makes on other users' master keys, are seen only by their
-- owner in /keys/query). ``only_for``: the one user whose device_lists.changed gets
-- the row's user_id; NULL for a change every user sharing a room is told of.
ALTER TABLE e2e_device_list_stream ADD COLUMN only_for TEXT;
