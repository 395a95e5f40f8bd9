"""Membership across servers: the resident side (make_/send_ join, leave, knock;
receiving invites) and the remote side (our users joining, knocking, leaving and
inviting through other servers)."""
