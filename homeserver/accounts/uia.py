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
from dataclasses import dataclass, field
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.storage.database import Database

SESSION_LIFETIME_MS = 30 * 60 * 1000

# Checks one stage: True when the auth dict satisfies it, or (also satisfied) a dict of
# what the stage established (the validated email of m.login.email.identity), which
# the completed outcome carries in ``stages`` under the stage's name.
StageCheck = Callable[[str, dict[str, Any]], Awaitable[bool | dict[str, Any]]]


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
        if completed or failure is not None:
            self.body["completed"] = completed
        self.failed = failure is not None

    def to_json(self) -> dict[str, Any]:
        if self.failed:
            return {"errcode": self.errcode, "error": self.error, **self.body}
        return dict(self.body)


@dataclass(frozen=True)
class UiaOutcome:
    """A completed authentication: the session, the request body to act on (the one that
    started the session when the client sent only ``auth`` since), and, for a session
    that already completed its operation (``keep=True``), what that produced."""

    session_id: str
    body: dict[str, Any]
    result: dict[str, Any] | None = None
    stages: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Session:
    operation: str
    user_nid: int | None
    created_ts: int
    completed: list[str]
    request: dict[str, Any] | None
    result: dict[str, Any] | None
    stages: dict[str, Any]


def other_request() -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", "This auth session was started for another request")


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
        request: dict[str, Any] | None = None,
        keep: bool = False,
    ) -> UiaOutcome:
        """Return when ``auth`` completes one of ``flows``; else raise ``UiaRequired``.

        ``operation`` names the request, its target included: a session started for
        one request answers 403 for another. ``request`` (the body without ``auth``,
        no plain passwords) is remembered by a new session and returned when a later
        stage sends no other parameters. ``keep``: the session outlives completion,
        so a retry of a completed request can be answered (see ``set_result``).
        """
        params = params or {}
        request = request or {}
        allowed = {stage for flow in flows for stage in flow}
        if auth is None:
            session = await self._new_session(operation, user_nid, request)
            raise UiaRequired(flows, session, [], params)
        if not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "'auth' must be an object")
        session_id = auth.get("session")
        completed: list[str] = []
        stages: dict[str, Any] = {}
        if isinstance(session_id, str):
            found = await self._load(session_id)
            if found is None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown or expired auth session")
            if found.operation != operation or found.user_nid != user_nid:
                raise other_request()
            if found.result is not None:
                return UiaOutcome(session_id, found.request or {}, found.result, found.stages)
            completed = found.completed
            stages = found.stages
            if not request and found.request:
                request = found.request
            elif request:
                await self._db.execute(
                    "UPDATE uia_sessions SET request_json = $1 WHERE session_id = $2",
                    json.dumps(request),
                    session_id,
                )
        else:
            session_id = await self._new_session(operation, user_nid, request)
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
        passed = await check_stage(stage, auth)
        if not passed:
            raise UiaRequired(
                flows,
                session_id,
                completed,
                params,
                MatrixError(401, "M_FORBIDDEN", "Authentication failed"),
            )
        if stage not in completed:
            completed.append(stage)
        if isinstance(passed, dict):
            stages[stage] = passed
        if any(all(s in completed for s in flow) for flow in flows):
            if keep:
                await self._set_completed(session_id, completed, stages)
            else:
                await self._db.execute("DELETE FROM uia_sessions WHERE session_id = $1", session_id)
            return UiaOutcome(session_id, request, stages=stages)
        await self._set_completed(session_id, completed, stages)
        raise UiaRequired(flows, session_id, completed, params)

    async def completed_result(self, auth: Any, operation: str) -> UiaOutcome | None:
        """The outcome of an anonymous ``keep`` session that already completed
        ``operation`` and recorded its result, if ``auth`` names one."""
        session_id = auth.get("session") if isinstance(auth, dict) else None
        if not isinstance(session_id, str):
            return None
        found = await self._load(session_id)
        if found is None or found.result is None:
            return None
        if found.operation != operation or found.user_nid is not None:
            return None
        return UiaOutcome(session_id, found.request or {}, found.result, found.stages)

    async def set_result(self, session_id: str, result: dict[str, Any]) -> None:
        """Remember what a completed ``keep`` session's operation produced."""
        await self._db.execute(
            "UPDATE uia_sessions SET result_json = $1 WHERE session_id = $2",
            json.dumps(result),
            session_id,
        )

    async def _set_completed(
        self, session_id: str, completed: list[str], stages: dict[str, Any]
    ) -> None:
        await self._db.execute(
            "UPDATE uia_sessions SET completed = $1, stage_json = $2 WHERE session_id = $3",
            json.dumps(completed),
            json.dumps(stages) if stages else None,
            session_id,
        )

    async def _new_session(
        self, operation: str, user_nid: int | None, request: dict[str, Any]
    ) -> str:
        now = self._clock.now_ms()
        session_id = secrets.token_urlsafe(18)
        await self._db.execute(
            "DELETE FROM uia_sessions WHERE created_ts < $1", now - SESSION_LIFETIME_MS
        )
        await self._db.execute(
            "INSERT INTO uia_sessions"
            " (session_id, created_ts, operation, user_nid, completed, request_json)"
            " VALUES ($1, $2, $3, $4, '[]', $5)",
            session_id,
            now,
            operation,
            user_nid,
            json.dumps(request) if request else None,
        )
        return session_id

    async def _load(self, session_id: str) -> _Session | None:
        if "\x00" in session_id:  # never one of ours; PostgreSQL cannot even compare it
            return None
        row = await self._db.fetchone(
            "SELECT created_ts, operation, user_nid, completed, request_json, result_json,"
            " stage_json FROM uia_sessions WHERE session_id = $1",
            session_id,
        )
        if row is None or row[0] < self._clock.now_ms() - SESSION_LIFETIME_MS:
            return None
        return _Session(
            operation=row[1],
            user_nid=row[2],
            created_ts=row[0],
            completed=json.loads(row[3]),
            request=json.loads(row[4]) if row[4] else None,
            result=json.loads(row[5]) if row[5] else None,
            stages=json.loads(row[6]) if row[6] else {},
        )
