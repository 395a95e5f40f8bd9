"""Third-party networks (client-server "Third-party Networks"), answered from the
application services that declare the protocol in their registration's ``protocols``.

As Synapse does: a protocol's metadata is the first answer from a service that
has it, with the ``instances`` of every such service merged, each instance getting
``instance_id`` = ``{appservice id}|{network_id}`` (what ``/publicRooms`` takes as
``third_party_instance_id``); location and user look-ups are the concatenated
lists of every service asked. A service that fails or is down adds nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeserver.appservices.registration import AppService
from homeserver.appservices.service import AppServices
from homeserver.errors import not_found

PATH = "/_matrix/app/v1/thirdparty"
KINDS = ("location", "user")


class ThirdPartyLookup:
    def __init__(self, app_services: AppServices) -> None:
        self.app_services = app_services

    def _with_protocol(self, protocol: str) -> list[AppService]:
        return [
            s for s in self.app_services.services if s.url is not None and protocol in s.protocols
        ]

    async def protocol(self, protocol: str) -> dict[str, Any] | None:
        merged: dict[str, Any] | None = None
        instances: list[dict[str, Any]] = []
        for service in self._with_protocol(protocol):
            status, body = await self.app_services.query(
                service, f"{PATH}/protocol/{quote(protocol, safe='')}"
            )
            if status != 200 or not isinstance(body, dict):
                continue
            if merged is None:
                merged = dict(body)
            for instance in body.get("instances") or []:
                if isinstance(instance, dict):
                    network_id = instance.get("network_id")
                    entry = dict(instance)
                    if isinstance(network_id, str):
                        entry["instance_id"] = f"{service.id}|{network_id}"
                    instances.append(entry)
        if merged is not None:
            merged["instances"] = instances
        return merged

    async def protocols(self) -> dict[str, Any]:
        names = sorted({p for s in self.app_services.services for p in s.protocols})
        out: dict[str, Any] = {}
        for name in names:
            info = await self.protocol(name)
            if info is not None:
                out[name] = info
        return out

    async def one_protocol(self, protocol: str) -> dict[str, Any]:
        info = await self.protocol(protocol)
        if info is None:
            raise not_found("Protocol is not supported")
        return info

    async def lookup(self, kind: str, protocol: str | None, fields: dict[str, str]) -> list[Any]:
        """``kind`` location or user; with a protocol: by its fields, else by ``alias``
        (locations) or ``userid`` (users) across every service."""
        if protocol is None:
            services = [s for s in self.app_services.services if s.url is not None]
            path = f"{PATH}/{kind}"
        else:
            services = self._with_protocol(protocol)
            if not services:
                raise not_found("Protocol is not supported")
            path = f"{PATH}/{kind}/{quote(protocol, safe='')}"
        found: list[Any] = []
        for service in services:
            status, body = await self.app_services.query(service, path, fields)
            if status == 200 and isinstance(body, list):
                found.extend(item for item in body if isinstance(item, dict))
        return found
