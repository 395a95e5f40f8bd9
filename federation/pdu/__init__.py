"""Room events across servers: the inbound PDU pipeline, one module per spec step.

parse (format, room version, content hash) -> signatures (keyring) ->
[before the room's lock, the network:] fetch missing prev events
(get_missing_events), fetch_auth (missing auth events), the state at gaps
(state_at_incoming.state_after_gap) -> [under the lock, no network:]
state_at_incoming (state before the event, resolving forks: resolve) ->
checks.check_event -> EventPersister.persist. ``pipeline.PduPipeline`` runs
them in that order.
"""
