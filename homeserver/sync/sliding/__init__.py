"""Simplified sliding sync (MSC4186): request parsing, room lists, room bodies,
extensions and per-connection state, assembled by ``wiring.build_sliding``."""

# Advertised in /versions unstable_features; here rather than in ``service`` so that
# advertising it does not load sliding sync (built on first use, ``homeserver.lazy``).
SLIDING_SYNC_FEATURE = "org.matrix.simplified_msc3575"
