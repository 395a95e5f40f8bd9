"""Room events across servers: the inbound PDU pipeline, one module per spec step.

parse (format, room version, content hash) -> signatures (keyring) ->
fetch_auth (missing auth events) -> fetch_prev (missing prev events) ->
state_at_incoming (state before the event, resolving forks) -> checks.check_event
-> EventPersister.persist. ``pipeline.PduPipeline`` runs them in that order.
"""
