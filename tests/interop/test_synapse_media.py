"""Media between Myelin and a real Synapse, both directions, over loopback TLS: a user on
one server downloads (and thumbnails) media uploaded on the other, fetched with the
authenticated federation endpoint and its multipart answer, then served from the
downloading server's cache after the origin stopped."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY
from tests.helpers import Api, User
from tests.integration.media_support import download, image_size, png, thumbnail, upload_ok
from tests.interop.conftest import SynapseFactory
from tests.interop.synapse import RegisteredUser

pytestmark = pytest.mark.interop


def synapse_user(registered: RegisteredUser) -> User:
    return User(
        registered.user_id, registered.access_token, registered.device_id, registered.password
    )


async def test_synapse_user_downloads_myelin_media(
    make_server: ServerFactory, make_synapse: SynapseFactory
) -> None:
    synapse = make_synapse()
    myelin = await make_server(federated=True, **FAST_RETRY)
    carol = synapse_user(synapse.register(f"carol_{secrets.token_hex(3)}"))
    async with Api(myelin.client_url) as mapi, Api(synapse.client_url) as sapi:
        alice = await mapi.register("alice")
        blob = secrets.token_bytes(300_000)
        s, m = await upload_ok(mapi, alice, blob, "application/octet-stream", "blob.bin")
        si, mi = await upload_ok(mapi, alice, png(640, 320), "image/png", "pic.png")

        r = await download(sapi, carol, s, m)
        assert r.status == 200, r.body
        assert r.body == blob
        r = await thumbnail(sapi, carol, si, mi, width="96", height="96", method="crop")
        assert r.status == 200, r.body
        assert image_size(r.body) == (96, 96)

        await myelin.stop()
        r = await download(sapi, carol, s, m)
        assert r.status == 200 and r.body == blob


async def test_myelin_user_downloads_synapse_media(
    make_server: ServerFactory, make_synapse: SynapseFactory
) -> None:
    synapse = make_synapse()
    myelin = await make_server(federated=True, **FAST_RETRY)
    carol = synapse_user(synapse.register(f"carol_{secrets.token_hex(3)}"))
    async with Api(myelin.client_url) as mapi, Api(synapse.client_url) as sapi:
        bob = await mapi.register("bob")
        blob = secrets.token_bytes(300_000)
        s, m = await upload_ok(sapi, carol, blob, "application/octet-stream", "blob.bin")
        si, mi = await upload_ok(sapi, carol, png(640, 320), "image/png", "pic.png")
        assert s == synapse.server_name

        r = await download(mapi, bob, s, m)
        assert r.status == 200, r.body
        assert r.body == blob
        assert r.headers["Content-Disposition"] == "attachment; filename=blob.bin"
        r = await thumbnail(mapi, bob, si, mi, width="96", height="96", method="crop")
        assert r.status == 200 and image_size(r.body) == (96, 96)

        synapse.stop()
        r = await download(mapi, bob, s, m)
        assert r.status == 200 and r.body == blob
        r = await download(mapi, bob, si, mi)
        assert r.status == 200 and image_size(r.body) == (640, 320)
