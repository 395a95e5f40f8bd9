"""URL previews (client-server ``GET /media/preview_url``), off unless configured.

Design note
-----------
A preview makes the server fetch a URL a user chose, which is how a
homeserver gets turned against its own network. Every connection therefore
passes ``AddressPolicy``: IP literals are checked before connecting, host
names after DNS resolution (inside aiohttp's resolver, so the address checked
is the address connected to), and redirects are followed by hand, each hop
checked again. Loopback, private, link-local, multicast, reserved and
unspecified addresses are refused unless the operator allows a network; the
operator may deny more. Answers are read up to a bound, and an ``og:image``
is fetched the same way and stored as media so clients get an ``mxc://`` URI.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from homeserver.config import MediaConfig
from homeserver.errors import MatrixError

MAX_PAGE_BYTES = 1024 * 1024
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
TIMEOUT_S = 15.0
CACHE_TTL_S = 3600.0
CACHE_ENTRIES = 1000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def refused(error: str = "The URL cannot be previewed") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


class AddressPolicy:
    """Which addresses a preview may connect to."""

    def __init__(self, deny: list[str], allow: list[str]) -> None:
        self.deny: list[Network] = [ipaddress.ip_network(n, strict=False) for n in deny]
        self.allow: list[Network] = [ipaddress.ip_network(n, strict=False) for n in allow]

    def allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.deny):
            return False
        if any(ip in net for net in self.allow):
            return True
        return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


class PolicyRefused(OSError):
    """Every address of a host name is refused by the policy."""


class _PolicyResolver(AbstractResolver):
    def __init__(self, policy: AddressPolicy) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.allowed(r["host"])]
        if not allowed:
            raise PolicyRefused(f"{host}: no allowed address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _OpenGraph(HTMLParser):
    """``og:*`` meta properties, ``<title>`` and the description meta of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v for k, v in attrs if v is not None}
        if tag == "meta":
            prop = a.get("property") or a.get("name") or ""
            content = a.get("content")
            if content is None:
                return
            if prop.startswith("og:") and prop not in self.og and len(self.og) < 50:
                self.og[prop] = content[:1000]
            elif prop == "description" and self.description is None:
                self.description = content[:1000]
        elif tag == "title" and self.title is None:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = ((self.title or "") + data)[:1000]


def parse_page(html: str) -> dict[str, str]:
    """The OpenGraph answer of a page: its og tags, else title and description."""
    parser = _OpenGraph()
    parser.feed(html)
    parser.close()
    og = dict(parser.og)
    if "og:title" not in og and parser.title:
        og["og:title"] = parser.title.strip()
    if "og:description" not in og and parser.description:
        og["og:description"] = parser.description
    return og


# Stores a preview's image as media and returns its mxc URI.
StoreImage = Callable[[bytes, str], Awaitable[str]]


def image_dimensions(body: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header (nothing is decoded), or None."""
    from PIL import Image  # on the first preview with an image, not at start

    try:
        with Image.open(io.BytesIO(body)) as img:
            width, height = img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return int(width), int(height)


class UrlPreviewer:
    def __init__(self, config: MediaConfig, store_image: StoreImage) -> None:
        self.policy = AddressPolicy(config.url_preview_ip_deny, config.url_preview_ip_allow)
        # The system's CAs, plus url_preview_ca_file's (an intranet's own CA).
        self._ssl: ssl.SSLContext | bool = True
        if config.url_preview_ca_file is not None:
            self._ssl = ssl.create_default_context()
            self._ssl.load_verify_locations(cafile=config.url_preview_ca_file)
        self.store_image = store_image
        self._session: aiohttp.ClientSession | None = None
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_PolicyResolver(self.policy),
                limit=20,
                ttl_dns_cache=None,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def preview(self, url: str) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._cache.get(url)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        content_type, body, final_url = await self._fetch(url, MAX_PAGE_BYTES)
        essence = content_type.partition(";")[0].strip().lower()
        answer: dict[str, Any]
        if essence.startswith("image/"):
            answer = await self._image_answer(body, essence)
        elif essence in ("text/html", "application/xhtml+xml"):
            answer = dict(parse_page(body.decode("utf-8", errors="replace")))
            image = answer.pop("og:image", None)
            if image:
                answer.update(await self._image(urljoin(final_url, image)))
        else:
            answer = {}
        self._cache[url] = (now, answer)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return answer

    async def _image(self, url: str) -> dict[str, Any]:
        try:
            content_type, body, _ = await self._fetch(url, MAX_IMAGE_BYTES)
        except MatrixError:
            return {}
        essence = content_type.partition(";")[0].strip().lower()
        if not essence.startswith("image/"):
            return {}
        return await self._image_answer(body, essence)

    async def _image_answer(self, body: bytes, essence: str) -> dict[str, Any]:
        """The stored image's mxc URI, type, size and (when its header says) dimensions."""
        answer: dict[str, Any] = {
            "og:image": await self.store_image(body, essence),
            "og:image:type": essence,
            "matrix:image:size": len(body),
        }
        size = image_dimensions(body)
        if size is not None:
            answer["og:image:width"], answer["og:image:height"] = size
        return answer

    async def _fetch(self, url: str, limit: int) -> tuple[str, bytes, str]:
        """GET ``url`` within the policy, following redirects by hand; (type, body, final url)."""
        for _ in range(MAX_REDIRECTS + 1):
            parsed = URL(url)
            host = parsed.raw_host
            if parsed.scheme not in ("http", "https") or not host:
                raise MatrixError(400, "M_INVALID_PARAM", "Only http(s) URLs can be previewed")
            try:
                literal = ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                literal = None
            if literal is not None and not self.policy.allowed(str(literal)):
                raise refused()
            try:
                async with self._get_session().get(
                    parsed,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                    headers={"User-Agent": "Myelin URL preview"},
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if resp.status != 200:
                        raise MatrixError(502, "M_UNKNOWN", "The URL could not be fetched")
                    body = await resp.content.read(limit + 1)
                    if len(body) > limit:
                        raise MatrixError(502, "M_TOO_LARGE", "The page is too large to preview")
                    return resp.headers.get("Content-Type", ""), body, url
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, PolicyRefused):
                    raise refused() from None
                raise MatrixError(502, "M_UNKNOWN", "The URL could not be fetched") from None
            except (aiohttp.ClientError, TimeoutError):
                raise MatrixError(502, "M_UNKNOWN", "The URL could not be fetched") from None
        raise MatrixError(502, "M_UNKNOWN", "Too many redirects")
