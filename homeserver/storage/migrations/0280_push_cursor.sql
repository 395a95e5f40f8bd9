-- Push rules are evaluated after the send answered, by one background task
-- (push/evaluation.py), in stream order. Its cursor is this row: every event
-- with a stream ordering at or below it has its event_push_actions rows. The
-- task moves it in the same transaction as the rows it writes, so after a
-- crash it resumes at the first event without rows. A row of
-- stream_positions, not a table of its own: it is one position of one stream.
-- Events stored before this migration had their rows written with them.
INSERT INTO stream_positions (stream_name, position)
    SELECT 'push_evaluated', position FROM stream_positions WHERE stream_name = 'events';
