"""Pagination tokens of /messages: topological ``t<depth>_<stream>`` beside stream tokens."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.streams.tokens import StreamToken, TopoPosition, pagination_position


def test_topological_tokens_round_trip_including_backfilled_positions() -> None:
    for pos in (TopoPosition(12, 340), TopoPosition(3, -17), TopoPosition(0, 0)):
        assert pagination_position(pos.encode()) == pos
    assert TopoPosition(3, -17).encode() == "t3_-17"


def test_stream_tokens_still_accepted_and_bound_by_stream_alone() -> None:
    token = StreamToken(events=42, to_device=7).encode()
    assert pagination_position(token) == TopoPosition(None, 42)
    assert TopoPosition(None, 42).encode() == StreamToken(events=42).encode()


@pytest.mark.parametrize("bad", ["t", "t1_", "t_1", "tx_1", "t1_2_3", "t--1_2", "t1_2x"])
def test_malformed_topological_tokens_are_refused(bad: str) -> None:
    with pytest.raises(MatrixError) as e:
        pagination_position(bad)
    assert e.value.errcode == "M_INVALID_PARAM"


def test_a_topological_token_is_not_a_sync_token() -> None:
    with pytest.raises(MatrixError):
        StreamToken.parse("t12_-5")
