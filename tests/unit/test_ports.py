"""Test servers listen outside the kernel's ephemeral range (tests/ports.py), so an
outgoing connection cannot take a stopped server's port before its restart."""

from __future__ import annotations

import socket

from tests.ports import _ephemeral_range, free_port


def test_a_free_port_is_outside_the_ephemeral_range_and_bindable() -> None:
    low, high = _ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert not low <= port <= high
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
