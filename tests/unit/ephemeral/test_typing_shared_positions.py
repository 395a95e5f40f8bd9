"""TypingService with several processes (``share`` set): changes are applied only as
they come back from every process's bus, at their shared positions, and timers send
stops instead of stopping locally (rooms/ephemeral/typing_shared.py)."""

from __future__ import annotations

import asyncio

from homeserver.rooms.ephemeral.typing import BACKUP_GRACE_MS, TypingChange, TypingService
from tests.room_facts import RoomFacts

ROOM = "!room:localhost"
ALICE = "@alice:localhost"

Sent = list[tuple[str, str, bool, int | None]]


def make() -> tuple[TypingService, Sent, list[TypingChange]]:
    facts = RoomFacts()
    facts.join(ALICE, ROOM)
    service = TypingService(facts.is_joined, epoch="db")
    sent: Sent = []

    async def share(user_id: str, room_id: str, typing: bool, timeout_ms: int | None) -> None:
        sent.append((user_id, room_id, typing, timeout_ms))

    service.share = share
    seen: list[TypingChange] = []
    service.change_hooks.append(seen.append)
    return service, sent, seen


async def test_a_taken_change_is_sent_not_applied() -> None:
    service, sent, seen = make()
    await service.set_typing(ALICE, ROOM, True, 10_000)
    assert sent == [(ALICE, ROOM, True, 10_000)]
    assert service.typing_users(ROOM) == [] and seen == [] and service.position == 0
    service.close()


async def test_shared_changes_apply_at_their_positions_once() -> None:
    service, _, seen = make()
    service.position = 40  # the counter when this process started
    service.apply_shared(39, ALICE, ROOM, True, 10_000, False)  # before this process
    assert service.typing_users(ROOM) == []
    service.apply_shared(42, ALICE, ROOM, True, 10_000, True)
    assert service.current_token() == "db.42"
    assert service.typing_for_rooms([ROOM], 41) == {ROOM: {"user_ids": [ALICE]}}
    service.apply_shared(42, ALICE, ROOM, False, None, True)  # a repeat: ignored
    assert service.typing_users(ROOM) == [ALICE]
    # A refresh moves the position (tokens agree everywhere) but changes no list.
    service.apply_shared(43, ALICE, ROOM, True, 10_000, False)
    assert service.position == 43 and service.typing_for_rooms([ROOM], 42) == {}
    # A stop of someone not typing still takes its position.
    service.apply_shared(44, "@bob:localhost", ROOM, False, None, False)
    assert service.position == 44 and service.typing_for_rooms([ROOM], 43) == {}
    service.apply_shared(45, ALICE, ROOM, False, None, False)
    assert service.typing_for_rooms([ROOM], 44) == {ROOM: {"user_ids": []}}
    assert [(c.position, c.typing, c.changed, c.taken_here, c.shared) for c in seen] == [
        (42, True, True, True, True),
        (43, True, False, False, True),
        (45, False, True, False, True),
    ]
    service.close()


async def test_the_taker_expires_first_and_sends_the_stop() -> None:
    service, sent, _ = make()
    loop = asyncio.get_running_loop()
    service.apply_shared(1, ALICE, ROOM, True, 60_000, False)
    backup = service._typing[ROOM][ALICE].when() - loop.time()
    service.apply_shared(2, ALICE, ROOM, True, 60_000, True)
    taker = service._typing[ROOM][ALICE].when() - loop.time()
    assert backup - taker > BACKUP_GRACE_MS / 1000 / 2  # the non-taker waits longer
    service.apply_shared(3, ALICE, ROOM, True, 0, True)  # expires at once
    for _ in range(100):  # bounded: the timer and the spawned send run on the loop
        if sent:
            break
        await asyncio.sleep(0.01)
    assert sent == [(ALICE, ROOM, False, None)]
    assert service.typing_users(ROOM) == [ALICE]  # stopped only when the stop comes back
    service.close()
