"""Bundled aggregations in /sync: edits and references of the timeline are read in
one statement (a round trip less per sync with events), and a redacted parent still
gets its references but no edit (spec: "Redactions of edited events")."""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.sync_support import count
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_relations_search import send
from tests.integration.test_sync_statement_counts import counted_sync


async def test_edits_and_references_in_one_read(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room = await create_room(api, alice)
        root = await send(api, alice, room, {"msgtype": "m.text", "body": "root"}, "r")
        edit = await send(
            api,
            alice,
            room,
            {
                "msgtype": "m.text",
                "body": "* root!",
                "m.new_content": {"msgtype": "m.text", "body": "root!"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": root},
            },
            "e",
        )
        ref = await send(
            api,
            alice,
            room,
            {"body": "see", "m.relates_to": {"rel_type": "m.reference", "event_id": root}},
            "f",
        )
        body, counter = await counted_sync(hs, alice)
        by_id = {e["event_id"]: e for e in body["rooms"]["join"][room]["timeline"]["events"]}
        rel = by_id[root]["unsigned"]["m.relations"]
        assert rel["m.replace"]["event_id"] == edit
        assert rel["m.reference"] == {"chunk": [{"event_id": ref}]}
        assert count(counter, "WHERE r.rel_type IN (") == 1
        assert count(counter, "SELECT r.relates_to_id, r.event_nid FROM event_relations") == 0

        r = await api.put(f"/rooms/{room}/redact/{root}/x", {}, token=alice.access_token)
        assert r.status == 200, r.body
        body, _ = await counted_sync(hs, alice)
        by_id = {e["event_id"]: e for e in body["rooms"]["join"][room]["timeline"]["events"]}
        rel = by_id[root]["unsigned"].get("m.relations", {})
        assert "m.replace" not in rel
        assert rel["m.reference"] == {"chunk": [{"event_id": ref}]}
