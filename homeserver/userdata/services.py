"""The per-user data services, built together because they share the account-data stream.

Push rules, read as account data, are built on top of these (``push/wiring.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.storage.database import Database
from homeserver.userdata.account_data import AccountDataService
from homeserver.userdata.account_data_store import AccountDataStore
from homeserver.userdata.filters import FilterService, FilterStore
from homeserver.userdata.presence import PresenceService, PresenceStore


@dataclass
class UserDataServices:
    account_data: AccountDataService
    filters: FilterService
    presence: PresenceService

    @classmethod
    def build(cls, db: Database, clock: Clock) -> UserDataServices:
        account_data = AccountDataService(db, AccountDataStore(db))
        return cls(
            account_data=account_data,
            filters=FilterService(FilterStore(db)),
            presence=PresenceService(db, PresenceStore(db), clock),
        )
