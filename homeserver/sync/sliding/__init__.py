"""Simplified sliding sync (MSC4186): request parsing, room lists, room bodies,
extensions and per-connection state, assembled by ``wiring.build_sliding``."""
