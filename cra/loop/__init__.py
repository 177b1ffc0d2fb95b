"""The self-improvement loop (`cra loop`): cycles of ingest, harness, plan, curate, train,
evaluate, promote and check, with its limits enforced in code and its state in raw.db."""
