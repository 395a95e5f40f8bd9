"""The per-user data services, built together because they share the account-data stream."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.push.service import PushRuleService
from homeserver.push.store import PushRuleStore
from homeserver.storage.database import Database
from homeserver.userdata.account_data import AccountDataService
from homeserver.userdata.account_data_store import AccountDataStore
from homeserver.userdata.filters import FilterService, FilterStore
from homeserver.userdata.presence import PresenceService, PresenceStore


@dataclass
class UserDataServices:
    account_data: AccountDataService
    filters: FilterService
    push: PushRuleService
    presence: PresenceService

    @classmethod
    def build(cls, db: Database, clock: Clock) -> UserDataServices:
        account_data = AccountDataService(db, AccountDataStore(db))
        push = PushRuleService(db, PushRuleStore(), account_data)
        # m.push_rules reads as the default ruleset until the user changes a rule.
        account_data.providers["m.push_rules"] = push.client_ruleset
        return cls(
            account_data=account_data,
            filters=FilterService(FilterStore(db)),
            push=push,
            presence=PresenceService(db, PresenceStore(db), clock),
        )
