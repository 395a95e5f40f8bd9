-- Each pusher's cursor: the stream ordering of the last notification row
-- (event_push_actions) delivered to its gateway. Delivery sends the rows past
-- it in order and moves it after each answer, so pushes survive a restart or
-- a gateway outage without a queue table of their own (push/delivery.py).
-- Existing pushers start at the current end of the stream.

ALTER TABLE pushers ADD COLUMN last_stream_ordering BIGINT NOT NULL DEFAULT 0;

UPDATE pushers SET last_stream_ordering =
    (SELECT COALESCE(MAX(stream_ordering), 0) FROM events);
