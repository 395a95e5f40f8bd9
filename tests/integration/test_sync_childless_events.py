"""An incremental /sync reads, with its new events, whether any relation points at
them (``SyncStore.user_memberships``), and looks up bundled aggregations only for those
that have one: a woken sync of a plain message reads no bundles (a statement less),
and a new event whose edit, reference or thread reply is in the same batch still gets
them all."""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.sync_support import count, shared_room
from tests.integration.test_rooms_relations_search import send, thread_reply
from tests.integration.test_sync_statement_counts import counted_sync

# The bundles' one statement (``RelationStore.thread_heads_and_children``).
BUNDLES_SQL = "WHERE r.rel_type IN ("


def text(body: str) -> dict[str, str]:
    return {"msgtype": "m.text", "body": body}


async def test_new_events_with_children_get_their_bundles(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room = await shared_room(api, alice, bob)
        since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]
        root = await send(api, alice, room, text("root"), "r")
        edit = await send(
            api,
            alice,
            room,
            {
                **text("* root!"),
                "m.new_content": text("root!"),
                "m.relates_to": {"rel_type": "m.replace", "event_id": root},
            },
            "e",
        )
        ref = await send(
            api,
            alice,
            room,
            {**text("see"), "m.relates_to": {"rel_type": "m.reference", "event_id": root}},
            "f",
        )
        reply = await send(api, bob, room, thread_reply(root, "in thread"), "t")
        plain = await send(api, alice, room, text("plain"), "p")

        body, counter = await counted_sync(hs, bob, since)
        events = body["rooms"]["join"][room]["timeline"]["events"]
        by_id = {e["event_id"]: e for e in events}
        assert list(by_id) == [root, edit, ref, reply, plain]
        rel = by_id[root]["unsigned"]["m.relations"]
        assert rel["m.replace"]["event_id"] == edit
        assert rel["m.reference"] == {"chunk": [{"event_id": ref}]}
        assert rel["m.thread"]["latest_event"]["event_id"] == reply
        assert rel["m.thread"]["count"] == 1
        assert rel["m.thread"]["current_user_participated"] is True
        for other in (edit, ref, reply, plain):
            assert "m.relations" not in by_id[other]["unsigned"], by_id[other]
        assert count(counter, BUNDLES_SQL) == 1

        # A relation to an event the client already has comes as a timeline event of
        # its own; the new events have no children: no bundle read.
        since = body["next_batch"]
        late = await send(
            api,
            alice,
            room,
            {**text("see too"), "m.relates_to": {"rel_type": "m.reference", "event_id": plain}},
            "g",
        )
        body, counter = await counted_sync(hs, bob, since)
        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [late]
        assert "m.relations" not in events[0]["unsigned"]
        assert count(counter, BUNDLES_SQL) == 0

        # An initial sync reads the flags with its rooms (``SyncStore.sync_heads_and_rooms``):
        # the plain message has a child now, so it reads the bundles, and finds the late one.
        body, counter = await counted_sync(hs, bob)
        by_id = {e["event_id"]: e for e in body["rooms"]["join"][room]["timeline"]["events"]}
        assert by_id[plain]["unsigned"]["m.relations"]["m.reference"] == {
            "chunk": [{"event_id": late}]
        }
        assert count(counter, BUNDLES_SQL) == 1


async def test_a_redacted_child_in_the_batch_leaves_no_edit(make_server: ServerFactory) -> None:
    """A redaction deletes the relation row: the parent is then childless again."""
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room = await shared_room(api, alice, bob)
        since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]
        root = await send(api, alice, room, text("root"), "r")
        edit = await send(
            api,
            alice,
            room,
            {
                **text("* root?"),
                "m.new_content": text("root?"),
                "m.relates_to": {"rel_type": "m.replace", "event_id": root},
            },
            "e",
        )
        r = await api.put(f"/rooms/{room}/redact/{edit}/x", {}, token=alice.access_token)
        assert r.status == 200, r.body
        body, _ = await counted_sync(hs, bob, since)
        by_id = {e["event_id"]: e for e in body["rooms"]["join"][room]["timeline"]["events"]}
        assert "m.replace" not in by_id[root]["unsigned"].get("m.relations", {})
        assert by_id[edit]["unsigned"]["redacted_because"]["type"] == "m.room.redaction"
