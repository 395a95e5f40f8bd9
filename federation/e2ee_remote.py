"""``RemoteKeys`` over federation: /keys/query and /keys/claim for users on other servers.

``query_keys`` answers tracked users from the remote device-list cache
(kept fresh by ``m.device_list_update``; a user we share a room with is
resynced into it first) and asks the user's server with
``POST /_matrix/federation/v1/user/keys/query`` for the others.
``claim_keys`` always asks (``POST /user/keys/claim``): one-time keys are
consumed on their own server. Any failure becomes ``RemoteUnavailable``,
which ``KeysService`` reports in ``failures`` for that server only.
"""

from __future__ import annotations

from typing import Any, Protocol

from federation.device_lists import RemoteDeviceLists
from federation.errors import FederationError
from homeserver.e2ee.interfaces import RemoteUnavailable

QUERY_PATH = "/_matrix/federation/v1/user/keys/query"
CLAIM_PATH = "/_matrix/federation/v1/user/keys/claim"
KEY_FIELDS = ("device_keys", "master_keys", "self_signing_keys")


class JsonPoster(Protocol):
    async def post_json(
        self, destination: str, path: str, body: Any, *, timeout_s: float = ...
    ) -> Any: ...


def _reason(e: FederationError) -> str:
    if e.status is None:
        return "The remote server could not be reached"
    return f"The remote server answered HTTP {e.status}"


class FederationRemoteKeys:
    def __init__(self, client: JsonPoster, device_lists: RemoteDeviceLists) -> None:
        self.client = client
        self.device_lists = device_lists

    async def query_keys(
        self, destination: str, device_keys: dict[str, list[str]], timeout_ms: int
    ) -> dict[str, Any]:
        await self.device_lists.track_for_query(list(device_keys), max(timeout_ms, 1) / 1000)
        answer, untracked = await self.device_lists.cached_query(device_keys)
        if not untracked:
            return answer
        body = {"device_keys": {u: device_keys[u] for u in untracked}}
        got = await self._post(destination, QUERY_PATH, body, timeout_ms)
        for field in KEY_FIELDS:
            value = got.get(field)
            if isinstance(value, dict):
                answer[field].update(
                    {u: v for u, v in value.items() if u in untracked and isinstance(v, dict)}
                )
        return answer

    async def claim_keys(
        self, destination: str, one_time_keys: dict[str, dict[str, str]], timeout_ms: int
    ) -> dict[str, Any]:
        got = await self._post(
            destination, CLAIM_PATH, {"one_time_keys": one_time_keys}, timeout_ms
        )
        keys = got.get("one_time_keys")
        if not isinstance(keys, dict):
            raise RemoteUnavailable("The remote server sent a malformed answer")
        return {
            "one_time_keys": {
                u: v for u, v in keys.items() if u in one_time_keys and isinstance(v, dict)
            }
        }

    async def _post(
        self, destination: str, path: str, body: dict[str, Any], timeout_ms: int
    ) -> dict[str, Any]:
        try:
            got = await self.client.post_json(
                destination, path, body, timeout_s=max(timeout_ms, 1) / 1000
            )
        except FederationError as e:
            raise RemoteUnavailable(_reason(e)) from None
        if not isinstance(got, dict):
            raise RemoteUnavailable("The remote server sent a malformed answer")
        return got
