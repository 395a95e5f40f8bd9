"""Application services (bridges, bots): registrations, identity assertion, transactions,
queries."""
