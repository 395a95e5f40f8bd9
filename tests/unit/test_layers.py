"""The layers of ../shared/DESIGN.md hold in this tree, and the checker that says so can fail.

The checker (``tests/layers.py``) reads the source with ``ast``; the synthetic trees below
each break one rule, so a checker that reported nothing would fail these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layers import all_imports, check, cycle_findings, known_modules, rule_findings

ROOT = Path(__file__).resolve().parents[2]


def test_the_tree_keeps_its_layers() -> None:
    # Not vacuous: the tree is really read (hundreds of modules and imports).
    assert len(known_modules(ROOT)) > 150
    assert len(all_imports(ROOT)) > 1000
    findings = check(ROOT)
    assert findings == [], "\n".join(findings)


def write(root: Path, files: dict[str, str]) -> Path:
    """A small tree of packages: every folder gets an ``__init__.py``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for top in ("homeserver", "federation"):
        for folder in [root / top, *(p for p in (root / top).rglob("*") if p.is_dir())]:
            init = folder / "__init__.py"
            if folder.is_dir() and not init.exists():
                init.write_text("", encoding="utf-8")
    return root


BASE = {
    "homeserver/app.py": "from federation import Federation\nfrom homeserver.api import rooms\n",
    "homeserver/__main__.py": "from homeserver.api.rooms import RoomsApi\n",
    "homeserver/api/rooms.py": "from homeserver.rooms.service import RoomService\n",
    "homeserver/rooms/service.py": "from homeserver.events.model import Event\n",
    "homeserver/rooms/reading.py": "from homeserver.rooms.service import RoomService\n",
    "homeserver/rooms/auth/rules.py": "import re\nfrom homeserver.events.model import Event\n",
    "homeserver/rooms/state_res/resolve.py": "import heapq\nfrom ..auth import rules\n",
    "homeserver/events/model.py": "import json\nfrom nacl.signing import VerifyKey\n",
    "homeserver/sync/builder.py": "from homeserver.rooms.service import RoomService\n",
    "homeserver/storage/database.py": "import asyncio\nimport sqlite3\n",
    "federation/server.py": "from homeserver.rooms.service import RoomService\n",
    "federation/client.py": "import aiohttp\nfrom .server import x\n",
}


def test_a_clean_synthetic_tree_passes(tmp_path: Path) -> None:
    assert check(write(tmp_path, BASE)) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "homeserver/rooms/service.py",
            "def f():\n    from federation.server import x\n",
            "only homeserver.app may import federation",
        ),
        (
            "homeserver/sync/wiring.py",
            "from homeserver.api.rooms import RoomsApi\n",
            "a domain package must not import the client API",
        ),
        (
            "homeserver/rooms/wiring.py",
            "from ..api import rooms\n",
            "a domain package must not import the client API",
        ),
        (
            "federation/public_rooms.py",
            "from homeserver.api.rooms import parse\n",
            "federation must not import the client API",
        ),
        (
            "homeserver/events/signing.py",
            "import asyncio\n",
            "the pure core must not import I/O (asyncio)",
        ),
        (
            "homeserver/rooms/auth/member.py",
            "from aiohttp import web\n",
            "the pure core must not import I/O (aiohttp)",
        ),
        (
            "homeserver/rooms/state_res/common.py",
            "from homeserver.storage.database import Database\n",
            "the pure core may import only the pure core",
        ),
        (
            "homeserver/events/model.py",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from homeserver.rooms import service\n",
            "the pure core may import only the pure core",
        ),
    ],
)
def test_each_forbidden_import_is_reported(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    findings = rule_findings(all_imports(write(tmp_path, {**BASE, name: text})))
    assert len(findings) == 1, findings
    assert findings[0].startswith(name + ":") and findings[0].endswith(expected), findings


def test_a_package_cycle_is_reported_with_its_imports(tmp_path: Path) -> None:
    files = {**BASE, "homeserver/rooms/notify.py": "from homeserver.sync import notifier\n"}
    files["homeserver/sync/notifier.py"] = ""
    findings = cycle_findings(write(tmp_path, files))
    assert len(findings) == 1, findings
    assert findings[0].startswith(
        "package cycle in homeserver: homeserver.rooms <-> homeserver.sync"
    )
    assert (
        "homeserver/rooms/notify.py:1 (homeserver.rooms.notify -> homeserver.sync.notifier)"
        in (findings[0])
    )
    assert "homeserver/sync/builder.py:1" in findings[0]


def test_cycles_are_found_in_nested_packages_and_through_three_packages(tmp_path: Path) -> None:
    files = {
        **BASE,
        # rooms.store -> rooms.service -> rooms.store, inside homeserver.rooms
        "homeserver/rooms/store/events_store.py": "from homeserver.rooms import service\n",
        "homeserver/rooms/service.py": "from homeserver.rooms.store.events_store import E\n",
        # accounts -> push -> userdata -> accounts, at the top
        "homeserver/accounts/service.py": "import homeserver.push.rules\n",
        "homeserver/push/rules.py": "from homeserver.userdata.account_data import A\n",
        "homeserver/userdata/account_data.py": "from homeserver.accounts.service import S\n",
    }
    findings = cycle_findings(write(tmp_path, files))
    assert [f.split(";")[0] for f in findings] == [
        "package cycle in homeserver: "
        "homeserver.accounts <-> homeserver.push <-> homeserver.userdata",
        "package cycle in homeserver.rooms: homeserver.rooms.service <-> homeserver.rooms.store",
    ]


def test_module_cycles_inside_one_package_are_allowed(tmp_path: Path) -> None:
    files = {
        **BASE,
        "homeserver/rooms/service.py": "from homeserver.rooms.reading import R\n",
        "homeserver/rooms/reading.py": "from . import service\n",
    }
    assert check(write(tmp_path, files)) == []
