"""Ephemeral room data: typing notifications, read receipts and read markers.

These live outside the event graph. /sync and the federation sender read
them by stream position; the services publish changes through hook lists.
"""
