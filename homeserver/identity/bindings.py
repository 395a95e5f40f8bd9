"""Binding a user's addresses on identity servers, and removing those bindings
(spec client-server: ``POST /account/3pid/bind``, ``/account/3pid/unbind``, the
``id_server`` of ``/account/3pid/delete`` and of ``/account/deactivate``).

The homeserver remembers which identity server it bound each address on, so an
unbind without ``id_server`` goes to exactly those; with ``id_server`` it goes
there even when the binding was made elsewhere ("bound out of band"). The answer
``id_server_unbind_result`` is ``success`` when every server asked removed it,
``no-support`` when there was none to ask or one does not support unbinding.
"""

from __future__ import annotations

import logging

from homeserver.errors import MatrixError
from homeserver.identity.bindings_store import BindingStore
from homeserver.identity.client import IdentityClient, IdentityServerError, valid_id_server

log = logging.getLogger("myelin.identity")

SUCCESS = "success"
NO_SUPPORT = "no-support"
# Answers by which an identity server says it cannot unbind (Synapse reads them so too).
_UNSUPPORTED = (400, 404, 501)


def check_id_server(id_server: str) -> str:
    if not valid_id_server(id_server):
        raise MatrixError(400, "M_INVALID_PARAM", "'id_server' is not a valid server name")
    return id_server


def identity_failure(e: IdentityServerError) -> MatrixError:
    """The client's error for an identity server that failed a request we needed."""
    if e.status is not None and 400 <= e.status < 500:
        return MatrixError(
            400, e.errcode or "M_UNKNOWN", f"The identity server refused: {e.reason}"
        )
    return MatrixError(502, "M_UNKNOWN", f"Failed to contact the identity server: {e.reason}")


class BindingService:
    def __init__(self, client: IdentityClient, store: BindingStore) -> None:
        self.client = client
        self.store = store

    async def bind(
        self, user_id: str, id_server: str, access_token: str, sid: str, client_secret: str
    ) -> None:
        """Ask ``id_server`` to bind the address it validated in session ``sid``."""
        check_id_server(id_server)
        try:
            answer = await self.client.bind(id_server, access_token, sid, client_secret, user_id)
        except IdentityServerError as e:
            raise identity_failure(e) from None
        medium, address = answer.get("medium"), answer.get("address")
        if not isinstance(medium, str) or not isinstance(address, str):
            raise MatrixError(502, "M_UNKNOWN", "The identity server's bind answer is malformed")
        await self.store.add(user_id, medium, address, id_server)

    async def unbind(self, user_id: str, medium: str, address: str, id_server: str | None) -> str:
        """Remove the binding from ``id_server``, or from every server we bound it on."""
        if id_server is not None:
            servers = [check_id_server(id_server)]
        else:
            servers = await self.store.servers_for(user_id, medium, address)
        if not servers:
            return NO_SUPPORT
        result = SUCCESS
        for server in servers:
            if not await self._unbind_one(user_id, medium, address, server):
                result = NO_SUPPORT
        return result

    async def unbind_all(self, user_id: str, id_server: str | None = None) -> str:
        """Deactivation: every binding made through us, on its server or ``id_server``.
        Failures are logged, not raised: the account goes regardless."""
        bindings = await self.store.all_for(user_id)
        if not bindings:
            return NO_SUPPORT
        result = SUCCESS
        for medium, address, server in bindings:
            try:
                target = id_server if id_server is not None else server
                if not await self._unbind_one(user_id, medium, address, target):
                    result = NO_SUPPORT
            except MatrixError:
                log.info("could not unbind an address of a deactivated user")
                result = NO_SUPPORT
            await self.store.remove(user_id, medium, address, server)
        return result

    async def _unbind_one(self, user_id: str, medium: str, address: str, server: str) -> bool:
        try:
            await self.client.unbind(server, user_id, medium, address)
            changed = True
        except IdentityServerError as e:
            if e.status not in _UNSUPPORTED:
                raise MatrixError(
                    502, "M_UNKNOWN", f"Failed to contact the identity server: {e.reason}"
                ) from None
            log.info("identity server answered HTTP %s to an unbind", e.status)
            changed = False
        await self.store.remove(user_id, medium, address, server)
        return changed
