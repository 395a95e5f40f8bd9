"""The arena for the hostile-peer suite: a Myelin server, a local user, a room, and a
scripted peer joined to it; what the room looks like to a client, and what was logged.

Every case follows one shape: take a snapshot, let the peer misbehave, check the
answer, check that the room is as before and that exactly one log line names the
peer (and none carries the event's content: each case hides ``secret`` in it).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest

from homeserver.app import RunningServer
from tests.federation.rooms_support import q
from tests.federation.scripted_peer import PeerRoom, Reply, ScriptedPeer
from tests.helpers import Api, User


@dataclass(frozen=True)
class Snapshot:
    """The room as a client sees it: its state and its timeline."""

    state: list[tuple[str, str, str]]
    timeline: list[str]


@dataclass
class Arena:
    hs: RunningServer
    peer: ScriptedPeer
    room: PeerRoom
    api: Api
    alice: User
    caplog: pytest.LogCaptureFixture
    secret: str = field(default_factory=lambda: "hostile-" + secrets.token_hex(8))

    @property
    def name(self) -> str:
        return self.hs.hs.config.server_name

    @property
    def room_id(self) -> str:
        return self.room.room_id

    async def snapshot(self) -> Snapshot:
        token = self.alice.access_token
        r = await self.api.get(f"/rooms/{q(self.room_id)}/state", token=token)
        assert r.status == 200, r.body
        state = sorted((e["type"], e["state_key"], e["event_id"]) for e in r.body)
        r = await self.api.get(f"/rooms/{q(self.room_id)}/messages?dir=b&limit=1000", token=token)
        assert r.status == 200, r.body
        return Snapshot(state, [e["event_id"] for e in reversed(r.body["chunk"])])

    async def send(self, pdus: list[Any] | None = None, edus: list[Any] | None = None) -> Reply:
        return await self.peer.send_transaction(self.name, pdus, edus)

    def message(self, body: str | None = None, **extra: Any) -> dict[str, Any]:
        """Message content that carries the case's secret."""
        return {"msgtype": "m.text", "body": body or self.secret, **extra}

    # --- logs ---------------------------------------------------------------------------

    def clear_logs(self) -> None:
        self.caplog.clear()

    def lines_naming(self, origin: str) -> list[str]:
        return [
            r.getMessage()
            for r in self.caplog.records
            if r.name.startswith("myelin")
            and r.levelno >= logging.INFO
            and origin in r.getMessage()
        ]

    def assert_logged_once(self, origin: str | None = None) -> str:
        """Exactly one line names the origin; no line (nor traceback) carries the secret."""
        origin = origin or self.peer.server_name
        for r in self.caplog.records:
            text = r.getMessage() + (self.caplog.text if r.exc_info else "")
            assert self.secret not in text, f"content in a log line: {r.name}"
        lines = self.lines_naming(origin)
        assert len(lines) == 1, lines
        return lines[0]
