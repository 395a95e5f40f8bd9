"""Small SQL text helpers shared by every store module (both engines)."""

from __future__ import annotations


def placeholders(n: int, start: int = 1) -> str:
    """``$start, $start+1, ...``: ``n`` numbered placeholders for an ``IN (...)`` list.

    Stores bind IN lists value by value (no array types: SQLite has none), so
    the statement text needs one numbered placeholder per value.
    """
    return ", ".join(f"${i}" for i in range(start, start + n))


def per_room_bounds(column: str, op: str, rooms: int, start: int) -> str:
    """``(room_nid = $start AND column op $start+1) OR ...`` for ``rooms`` rooms, each
    with a bound of its own (bind room nid, bound pairs in order): a batch read over
    many rooms in one statement."""
    return " OR ".join(
        f"(room_nid = ${start + 2 * i} AND {column} {op} ${start + 2 * i + 1})"
        for i in range(rooms)
    )


def joined_servers_sql(engine: str) -> str:
    """The distinct server names (everything after the user id's first colon, ports kept)
    of a room's joined members; bind the room nid as ``$1``.

    ``SELECT DISTINCT`` over the members read one row per member (a 10,000-member room's
    every send and join). This walks the index ``room_memberships_servers`` (migration
    0440) from one server name to the next: one index probe per server, whatever the
    number of members. The expression must stay the index's, character for character."""
    find = "strpos(user_id, ':')" if engine == "postgres" else "instr(user_id, ':')"
    server = f"substr(user_id, {find} + 1)"
    step = (
        f"SELECT {server} FROM room_memberships WHERE room_nid = $1 AND membership = 'join'"
        " {bound} ORDER BY " + server + " LIMIT 1"
    )
    return (
        "WITH RECURSIVE servers(name) AS ("
        f" SELECT ({step.format(bound='')})"
        f" UNION ALL SELECT ({step.format(bound=f'AND {server} > servers.name')})"
        " FROM servers WHERE servers.name IS NOT NULL)"
        " SELECT name FROM servers WHERE name IS NOT NULL"
    )
