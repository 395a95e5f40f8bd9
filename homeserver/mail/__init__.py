"""Outgoing email through the operator's SMTP server."""
