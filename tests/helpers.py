"""A small HTTP client for tests: real requests, Matrix-shaped answers."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

V3 = "/_matrix/client/v3"


@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str
    password: str


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.session is not None
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        assert self.session is not None
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        url = self.base_url + (
            path if path.startswith("/_") or path.startswith("/.") else V3 + path
        )
        async with self.session.request(
            method, url, json=json, data=data, headers=hdrs, params=params
        ) as resp:
            raw = await resp.read()
            try:
                body = await resp.json(content_type=None) if raw else None
            except ValueError:
                body = raw
            return Reply(resp.status, body, resp.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, json, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.request("PUT", path, json, **kw)

    async def delete(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.request("DELETE", path, json, **kw)

    async def register(self, username: str, password: str = "correct horse battery") -> User:
        r = await self.post(
            "/register",
            {"username": username, "password": password, "auth": {"type": "m.login.dummy"}},
        )
        assert r.status == 200, r.body
        return User(r.body["user_id"], r.body["access_token"], r.body["device_id"], password)

    async def register_guest(self) -> User:
        """A guest account (``kind=guest``; the server must allow guests)."""
        r = await self.post("/register", {}, params={"kind": "guest"})
        assert r.status == 200, r.body
        return User(r.body["user_id"], r.body["access_token"], r.body["device_id"], "")

    async def login(self, user: str, password: str, **extra: Any) -> Reply:
        return await self.post(
            "/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
                **extra,
            },
        )
