"""TypingService: timers, stream positions, tokens and hooks, with in-test membership."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.errors import MatrixError
from homeserver.rooms.ephemeral.typing import STALE, TypingChange, TypingService
from tests.room_facts import RoomFacts

ROOM = "!room:localhost"
OTHER = "!other:localhost"
ALICE = "@alice:localhost"
BOB = "@bob:localhost"


def make() -> tuple[TypingService, RoomFacts, list[TypingChange]]:
    facts = RoomFacts()
    for user in (ALICE, BOB):
        facts.join(user, ROOM)
        facts.join(user, OTHER)
    service = TypingService(facts.is_joined, epoch="e1")
    seen: list[TypingChange] = []
    service.change_hooks.append(seen.append)
    return service, facts, seen


async def test_start_and_stop_advance_the_stream() -> None:
    service, _, seen = make()
    await service.set_typing(ALICE, ROOM, True, 10_000)
    assert service.position == 1
    assert service.typing_for_rooms([ROOM, OTHER], 0) == {ROOM: {"user_ids": [ALICE]}}
    await service.set_typing(BOB, ROOM, True, 10_000)
    assert service.position == 2
    assert service.typing_for_rooms([ROOM], 1) == {ROOM: {"user_ids": [ALICE, BOB]}}
    assert service.typing_for_rooms([ROOM], 2) == {}
    await service.set_typing(ALICE, ROOM, False)
    assert service.position == 3
    assert service.typing_for_rooms([ROOM, OTHER], 2) == {ROOM: {"user_ids": [BOB]}}
    assert [(c.user_id, c.typing, c.position, c.changed) for c in seen] == [
        (ALICE, True, 1, True),
        (BOB, True, 2, True),
        (ALICE, False, 3, True),
    ]
    service.close()


async def test_timeout_expires_with_a_timer() -> None:
    service, _, seen = make()
    stopped = asyncio.Event()
    service.change_hooks.append(lambda c: stopped.set() if not c.typing else None)
    await service.set_typing(ALICE, ROOM, True, 50)
    assert service.typing_users(ROOM) == [ALICE]
    await asyncio.wait_for(stopped.wait(), 2)
    assert service.typing_users(ROOM) == []
    assert service.position == 2
    assert seen[-1] == TypingChange(ROOM, ALICE, False, 2, True)
    assert service.typing_for_rooms([ROOM], 1) == {ROOM: {"user_ids": []}}


async def test_refresh_replaces_the_timer_without_a_new_position() -> None:
    service, _, seen = make()
    await service.set_typing(ALICE, ROOM, True, 50)
    await service.set_typing(ALICE, ROOM, True, 10_000)
    assert service.position == 1
    assert seen[-1] == TypingChange(ROOM, ALICE, True, 1, False)
    await asyncio.sleep(0.2)  # the first, cancelled timer would have fired by now
    assert service.typing_users(ROOM) == [ALICE]
    assert service.position == 1
    service.close()


async def test_stop_when_not_typing_changes_nothing() -> None:
    service, _, seen = make()
    await service.set_typing(ALICE, ROOM, False)
    assert service.position == 0
    assert seen == []


async def test_not_joined_is_refused() -> None:
    service, facts, seen = make()
    facts.joined.discard((ALICE, ROOM))
    with pytest.raises(MatrixError) as err:
        await service.set_typing(ALICE, ROOM, True, 1000)
    assert err.value.status == 403 and err.value.errcode == "M_FORBIDDEN"
    assert service.position == 0 and seen == [] and service.typing_users(ROOM) == []


async def test_tokens_carry_the_process_epoch() -> None:
    service, _, _ = make()
    await service.set_typing(ALICE, ROOM, True, 10_000)
    token = service.current_token()
    assert token == "e1.1"
    assert service.decode_token(token) == 1
    assert service.decode_token("e0.1") == STALE  # another process
    assert service.decode_token("e1.99") == STALE  # never issued here
    assert service.decode_token("garbage") == STALE
    assert service.decode_token("e1.-1") == STALE
    # After a restart every requested room is answered, empty lists included,
    # so clients forget typists the old process knew about.
    assert service.typing_for_rooms([ROOM, OTHER], STALE) == {
        ROOM: {"user_ids": [ALICE]},
        OTHER: {"user_ids": []},
    }
    service.close()


async def test_failing_hook_does_not_break_typing() -> None:
    service, _, seen = make()

    def broken(change: TypingChange) -> None:
        raise RuntimeError("boom")

    service.change_hooks.insert(0, broken)
    await service.set_typing(ALICE, ROOM, True, 10_000)
    assert service.typing_users(ROOM) == [ALICE]
    assert len(seen) == 1
    service.close()


async def test_timeout_is_capped() -> None:
    service, _, _ = make()
    await service.set_typing(ALICE, ROOM, True, 10**12)
    handle = service._typing[ROOM][ALICE]
    loop = asyncio.get_running_loop()
    assert handle.when() - loop.time() <= 120.5
    service.close()
