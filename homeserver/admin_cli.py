"""Admin commands of the ``myelin`` CLI: list-users, deactivate-user, reset-password,
list-rooms, shutdown-room.

They open the configured database directly, so they work with the server
stopped or running, and go through the same services as the admin API.
A running server notices a deactivation, a password reset or an admin flag
within ``CACHE_RECHECK_MS`` (cached sessions are re-checked).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from homeserver.accounts.admin_store import UserQuery
from homeserver.config import load_config
from homeserver.errors import MatrixError
from homeserver.rooms.admin import RoomQuery

COMMANDS = ("list-users", "deactivate-user", "reset-password", "list-rooms", "shutdown-room")
PAGE = 1000


class AdminCliError(Exception):
    """A refusal stated in one line for the operator."""


def add_parsers(sub: Any) -> None:
    """Register the admin subcommands on the ``myelin`` parser."""
    u = sub.add_parser("list-users", help="list local accounts as a table")
    u.add_argument("--config", required=True)
    u.add_argument("--deactivated", action="store_true", help="include deactivated accounts")
    u.add_argument("--no-guests", action="store_true", help="leave guest accounts out")
    u.add_argument("--name", default=None, help="only ids or display names containing this")

    d = sub.add_parser("deactivate-user", help="deactivate an account (leaves its rooms)")
    d.add_argument("--config", required=True)
    d.add_argument("user", help="localpart or full user id")
    d.add_argument("--erase", action="store_true", help="also erase what the account sent")

    p = sub.add_parser("reset-password", help="set a new password for an account")
    p.add_argument("--config", required=True)
    p.add_argument("user", help="localpart or full user id")
    p.add_argument("--password", default=None)
    p.add_argument("--keep-devices", action="store_true", help="do not log devices out")

    r = sub.add_parser("list-rooms", help="list the rooms this server knows as a table")
    r.add_argument("--config", required=True)
    r.add_argument("--search", default=None, help="only rooms whose name or alias contains this")

    s = sub.add_parser("shutdown-room", help="make every local member leave a room")
    s.add_argument("--config", required=True)
    s.add_argument("room_id")
    s.add_argument("--block", action="store_true", help="keep local users from entering again")
    s.add_argument("--reason", default=None, help="reason shown in the leave events")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with a header rule, columns padded to their widest cell."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _yes(flag: int | bool) -> str:
    return "yes" if flag else "no"


def _user_id(user: str, server_name: str) -> str:
    return user if user.startswith("@") else f"@{user.lower()}:{server_name}"


async def run(args: argparse.Namespace) -> str:
    """Run one admin command; the text to print."""
    from homeserver.app import HomeServer

    config = load_config(args.config)
    password = None
    if args.command == "reset-password":
        password = args.password
        if password is None:
            if not sys.stdin.isatty():
                raise AdminCliError("--password is required when not run interactively")
            import getpass  # a terminal prompt: only these commands load it

            password = getpass.getpass("New password: ")
            if password != getpass.getpass("Confirm password: "):
                raise AdminCliError("passwords do not match")
    # Beside a running server on the same database, like register-user: no process
    # lock, and no outbound federation sending from this one-shot process.
    hs = await HomeServer.build(config, exclusive=False)
    try:
        return await _dispatch(hs, args, password)
    except MatrixError as e:
        raise AdminCliError(e.error) from None
    finally:
        await hs.close()


async def _dispatch(hs: Any, args: argparse.Namespace, password: str | None) -> str:
    admin = hs.admin
    server_name = hs.config.server_name
    if args.command == "list-users":
        users, total = await admin.users.list_users(
            UserQuery(
                limit=PAGE,
                name=args.name,
                guests=not args.no_guests,
                deactivated=args.deactivated,
            )
        )
        rows = [
            [
                u["name"],
                u["displayname"] or "",
                _yes(u["admin"]),
                _yes(u["is_guest"]),
                _yes(u["deactivated"]),
                _when(u["creation_ts"]),
                _when(u["last_seen_ts"]),
            ]
            for u in users
        ]
        headers = [
            "USER ID",
            "DISPLAY NAME",
            "ADMIN",
            "GUEST",
            "DEACTIVATED",
            "CREATED",
            "LAST SEEN",
        ]
        more = f" (first {len(users)} shown)" if total > len(users) else ""
        return table(headers, rows) + f"\n{total} user(s){more}"
    if args.command == "deactivate-user":
        user_id = _user_id(args.user, server_name)
        await admin.users.deactivate(user_id, args.erase)
        return f"deactivated {user_id}{' (erased)' if args.erase else ''}"
    if args.command == "reset-password":
        user_id = _user_id(args.user, server_name)
        await admin.users.set_password(user_id, password, not args.keep_devices)
        kept = "devices kept" if args.keep_devices else "every device logged out"
        return f"new password set for {user_id}; {kept}"
    if args.command == "list-rooms":
        answer = await admin.rooms.list_rooms(RoomQuery(limit=PAGE, search_term=args.search))
        rows = [
            [
                r["room_id"],
                r["name"] or "",
                r["canonical_alias"] or "",
                str(r["joined_members"]),
                str(r["joined_local_members"]),
                "yes" if r["encryption"] else "no",
            ]
            for r in answer["rooms"]
        ]
        headers = ["ROOM ID", "NAME", "ALIAS", "MEMBERS", "LOCAL", "ENCRYPTED"]
        return table(headers, rows) + f"\n{answer['total_rooms']} room(s)"
    # shutdown-room
    done = await admin.rooms.shutdown(
        f"@admin-cli:{server_name}", args.room_id, block=args.block, reason=args.reason
    )
    result = done.result
    rows = [[u, "left"] for u in result["kicked_users"]]
    rows += [[u, "FAILED"] for u in result["failed_to_kick_users"]]
    lines = [
        f"room {args.room_id}: {done.status}{' and blocked' if args.block else ''}",
        table(["LOCAL USER", "OUTCOME"], rows),
    ]
    if result["local_aliases"]:
        lines.append("removed aliases: " + ", ".join(result["local_aliases"]))
    return "\n".join(lines)
