"""Per-user data that /sync reads by stream position: account data, filters, presence."""
