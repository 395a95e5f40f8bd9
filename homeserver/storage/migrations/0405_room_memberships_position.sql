-- A room's membership rows by position (push/room_members.py, issue 15): push
-- evaluation keeps each room's members in memory and, when other processes write
-- memberships too, checks before each message that no row of the room changed after
-- the newest one it read: one probe of this index, not a read of every member.
CREATE INDEX room_memberships_room_position ON room_memberships (room_nid, stream_ordering);
