"""Client API: ``/pushrules/`` (spec: "Push Rules: API")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import MatrixError, bad_json, missing_param
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.push.rules import ruleset_json
from homeserver.push.service import PushRuleService
from homeserver.push.validate import check_kind, parse_actions

_RULE = "/pushrules/global/{kind}/{ruleId}"


class PushRulesApi:
    def __init__(self, push: PushRuleService, auth: Authenticator) -> None:
        self.push = push
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/pushrules/", self.get_all),
            *client_routes("GET", "/pushrules/global/", self.get_global),
            *client_routes("GET", "/pushrules/global/{kind}/", self.get_kind),
            *client_routes("GET", _RULE, self.get_rule),
            *client_routes("PUT", _RULE, self.put_rule),
            *client_routes("DELETE", _RULE, self.delete_rule),
            *client_routes("GET", _RULE + "/enabled", self.get_enabled),
            *client_routes("PUT", _RULE + "/enabled", self.put_enabled),
            *client_routes("GET", _RULE + "/actions", self.get_actions),
            *client_routes("PUT", _RULE + "/actions", self.put_actions),
            # Last: any other path under /pushrules/ names no scope, kind, rule or
            # attribute we know; a 400 says so (as Synapse answers), not a 404 that reads
            # as "no such endpoint".
            *(
                route
                for method in ("GET", "PUT", "DELETE")
                for route in client_routes(method, "/pushrules/{rest:.*}", self.malformed)
            ),
        ]

    async def malformed(self, request: web.Request) -> web.Response:
        await self.auth.requester(request, allow_guest=True)
        raise MatrixError(400, "M_UNRECOGNIZED", "Unrecognised push rule path")

    async def get_all(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request, allow_guest=True)
        return json_response(
            {"global": ruleset_json(await self.push.ruleset(r.user_nid, r.user_id))}
        )

    async def get_global(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request, allow_guest=True)
        return json_response(ruleset_json(await self.push.ruleset(r.user_nid, r.user_id)))

    async def get_kind(self, request: web.Request) -> web.Response:
        """The rules of one kind, in priority order (a ``Ruleset`` member)."""
        r = await self.auth.requester(request, allow_guest=True)
        kind = request.match_info["kind"]
        check_kind(kind)
        ruleset = ruleset_json(await self.push.ruleset(r.user_nid, r.user_id))
        return json_response(ruleset[kind])

    async def get_rule(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request, allow_guest=True)
        m = request.match_info
        rule = await self.push.get_rule(r.user_nid, r.user_id, m["kind"], m["ruleId"])
        return json_response(rule.to_json())

    async def put_rule(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request)
        m = request.match_info
        body = await json_body(request)
        await self.push.put_rule(
            r.user_nid,
            r.user_id,
            m["kind"],
            m["ruleId"],
            body,
            request.query.get("before"),
            request.query.get("after"),
        )
        return json_response({})

    async def delete_rule(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request)
        m = request.match_info
        await self.push.delete_rule(r.user_nid, r.user_id, m["kind"], m["ruleId"])
        return json_response({})

    async def get_enabled(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request, allow_guest=True)
        m = request.match_info
        rule = await self.push.get_rule(r.user_nid, r.user_id, m["kind"], m["ruleId"])
        return json_response({"enabled": rule.enabled})

    async def put_enabled(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request)
        m = request.match_info
        body = await json_body(request)
        if "enabled" not in body:
            raise missing_param("'enabled' is required")
        enabled = body["enabled"]
        if not isinstance(enabled, bool):
            raise bad_json("'enabled' must be a boolean")
        await self.push.set_attribute(
            r.user_nid, r.user_id, m["kind"], m["ruleId"], enabled=enabled
        )
        return json_response({})

    async def get_actions(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request, allow_guest=True)
        m = request.match_info
        rule = await self.push.get_rule(r.user_nid, r.user_id, m["kind"], m["ruleId"])
        return json_response({"actions": list(rule.actions)})

    async def put_actions(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request)
        m = request.match_info
        body = await json_body(request)
        if "actions" not in body:
            raise missing_param("'actions' is required")
        actions = parse_actions(body["actions"])
        await self.push.set_attribute(
            r.user_nid, r.user_id, m["kind"], m["ruleId"], actions=actions
        )
        return json_response({})
