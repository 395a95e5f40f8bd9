-- The servers of a room's joined members (MembershipStore.joined_servers, asked on every
-- local send and join) are read by skipping from one server name to the next in this
-- index: a step per server, not a row per member. The expression is the one the
-- queries use (joined_servers_sql), character for character.
CREATE INDEX room_memberships_servers
    ON room_memberships (room_nid, membership, substr(user_id, instr(user_id, ':') + 1));
