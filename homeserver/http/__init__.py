"""Neutral HTTP plumbing that both the client API (api/) and federation/ build on."""
