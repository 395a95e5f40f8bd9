"""Push rules: the spec's server-default rules, a pure evaluator, storage and API service."""
