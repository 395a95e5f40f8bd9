-- Typing shared by several processes (homeserver/rooms/ephemeral/typing_shared.py):
-- each change takes the next position of this counter row inside the transaction
-- that NOTIFYs it, so every process applies typing changes in one order and at the
-- same positions. One process alone never touches it (typing stays in memory).
INSERT INTO user_data_streams (stream, pos) VALUES ('typing', 0);
