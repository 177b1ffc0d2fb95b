"""The adapter registry: versions, evaluation, gated promotion, rollback (`cra adapter`)."""
