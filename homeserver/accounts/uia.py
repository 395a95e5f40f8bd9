"""User-interactive authentication (spec: client-server API, "User-Interactive Authentication API").

A request protected by UIA either carries an ``auth`` dict that completes a
flow, or gets 401 with the flows, the stages done so far and a session id.
Sessions live in the database (``uia_sessions``) and are bound to the
operation and the user they were started for, so one cannot be reused for
another request.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.storage.database import Database

SESSION_LIFETIME_MS = 30 * 60 * 1000

# Checks one stage: returns True when the auth dict satisfies it.
StageCheck = Callable[[str, dict[str, Any]], Awaitable[bool]]


class UiaRequired(MatrixError):
    """401 with the flows a client still has to complete."""

    def __init__(
        self,
        flows: list[list[str]],
        session: str,
        completed: list[str],
        params: dict[str, Any],
        failure: MatrixError | None = None,
    ) -> None:
        errcode = failure.errcode if failure else "M_FORBIDDEN"
        error = failure.error if failure else "Additional authentication is required"
        super().__init__(401, errcode, error)
        self.body: dict[str, Any] = {
            "flows": [{"stages": f} for f in flows],
            "params": params,
            "session": session,
        }
        if completed:
            self.body["completed"] = completed
        self.failed = failure is not None

    def to_json(self) -> dict[str, Any]:
        if self.failed:
            return {"errcode": self.errcode, "error": self.error, **self.body}
        return dict(self.body)


class UiaService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def authenticate(
        self,
        auth: Any,
        *,
        flows: list[list[str]],
        operation: str,
        user_nid: int | None,
        check_stage: StageCheck,
        params: dict[str, Any] | None = None,
    ) -> None:
        """Return when ``auth`` completes one of ``flows``; else raise ``UiaRequired``."""
        params = params or {}
        allowed = {stage for flow in flows for stage in flow}
        if auth is None:
            session = await self._new_session(operation, user_nid)
            raise UiaRequired(flows, session, [], params)
        if not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "'auth' must be an object")
        session_id = auth.get("session")
        completed: list[str] = []
        if isinstance(session_id, str):
            completed_or_none = await self._load(session_id, operation, user_nid)
            if completed_or_none is None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown or expired auth session")
            completed = completed_or_none
        else:
            session_id = await self._new_session(operation, user_nid)
        stage = auth.get("type")
        if not isinstance(stage, str):
            raise UiaRequired(flows, session_id, completed, params)
        if stage not in allowed:
            raise UiaRequired(
                flows,
                session_id,
                completed,
                params,
                MatrixError(400, "M_UNRECOGNIZED", f"Unsupported authentication type {stage}"),
            )
        if not await check_stage(stage, auth):
            raise UiaRequired(
                flows,
                session_id,
                completed,
                params,
                MatrixError(401, "M_FORBIDDEN", "Authentication failed"),
            )
        if stage not in completed:
            completed.append(stage)
        if any(all(s in completed for s in flow) for flow in flows):
            await self._db.execute("DELETE FROM uia_sessions WHERE session_id = $1", session_id)
            return
        await self._db.execute(
            "UPDATE uia_sessions SET completed = $1 WHERE session_id = $2",
            json.dumps(completed),
            session_id,
        )
        raise UiaRequired(flows, session_id, completed, params)

    async def _new_session(self, operation: str, user_nid: int | None) -> str:
        now = self._clock.now_ms()
        session_id = secrets.token_urlsafe(18)
        await self._db.execute(
            "DELETE FROM uia_sessions WHERE created_ts < $1", now - SESSION_LIFETIME_MS
        )
        await self._db.execute(
            "INSERT INTO uia_sessions (session_id, created_ts, operation, user_nid, completed)"
            " VALUES ($1, $2, $3, $4, '[]')",
            session_id,
            now,
            operation,
            user_nid,
        )
        return session_id

    async def _load(
        self, session_id: str, operation: str, user_nid: int | None
    ) -> list[str] | None:
        if "\x00" in session_id:  # never one of ours; PostgreSQL cannot even compare it
            return None
        row = await self._db.fetchone(
            "SELECT created_ts, operation, user_nid, completed FROM uia_sessions"
            " WHERE session_id = $1",
            session_id,
        )
        if row is None or row[1] != operation or row[2] != user_nid:
            return None
        if row[0] < self._clock.now_ms() - SESSION_LIFETIME_MS:
            return None
        completed: list[str] = json.loads(row[3])
        return completed
