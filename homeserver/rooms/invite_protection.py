"""Server-wide invite protection (config ``invite_protection``) and the invite rate limit.

An invite whose sender is listed in ``blocked_users``, or whose sender's server
matches ``blocked_servers``, is refused with 403 M_FORBIDDEN: a local user's
invite before it is built, a remote server's ``PUT /invite`` for one of our
users before we countersign it (federation/membership/resident.py). The
per-user ignore list (``m.ignored_user_list``) is honoured at read time
instead: /sync and sliding sync leave out invites from ignored users.
"""

from __future__ import annotations

from collections.abc import Callable

from homeserver.errors import MatrixError, forbidden
from homeserver.moderation_config import InviteProtectionConfig
from homeserver.rooms.auth.ids import domain_of
from homeserver.server_lists import ServerNameList

# Takes ``n`` invite tokens for a user or raises 429 (the composition root binds the limiter).
InviteLimiter = Callable[[str, int], None]


class InviteProtection:
    def __init__(self, config: InviteProtectionConfig) -> None:
        self._users = set(config.blocked_users)
        self._servers = ServerNameList(config.blocked_servers)
        self.limiter: InviteLimiter | None = None

    def refuses(self, inviter: str) -> bool:
        if inviter in self._users:
            return True
        return bool(self._servers) and self._servers.matches(domain_of(inviter))

    def check(self, inviter: str) -> None:
        """Raise 403 M_FORBIDDEN when this server refuses invites from ``inviter``."""
        if self.refuses(inviter):
            raise blocked_invite()

    def check_local(self, inviter: str, count: int = 1) -> None:
        """``count`` invites of a local user: the block list, then their invite budget
        (all at once, so createRoom refuses its invite list before making the room)."""
        self.check(inviter)
        if self.limiter is not None and count > 0:
            self.limiter(inviter, count)


def blocked_invite() -> MatrixError:
    return forbidden("Invites from this user or server are blocked on this server")
