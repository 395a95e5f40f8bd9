"""Server administration over HTTP: Synapse's admin API paths and shapes (issue 14).

Every route here answers only server admins (403 M_FORBIDDEN for others,
401 without a token), except the client-API parts that the spec opens to
every user (whois of oneself, registration token validity, support info).
"""
