"""Talking to identity servers: binding addresses, looking them up, storing invites."""
