"""Builds the push rule service over account data; called by the composition root.

Push rules are stored apart but read by clients as the ``m.push_rules``
account data event, so the service registers itself as that event's
provider. Built here, not with the user-data services, because push
depends on account data and not the other way round.
"""

from __future__ import annotations

from homeserver.push.service import PushRuleService
from homeserver.push.store import PushRuleStore
from homeserver.storage.database import Database
from homeserver.userdata.account_data import AccountDataService


def build_push_rules(db: Database, account_data: AccountDataService) -> PushRuleService:
    push = PushRuleService(db, PushRuleStore(), account_data)
    # m.push_rules reads as the default ruleset until the user changes a rule.
    account_data.providers["m.push_rules"] = push.client_ruleset
    return push
