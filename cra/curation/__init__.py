"""From logged runs to training data: `cra train-plan` (which adapters to train, from
what) and `cra curate-data` (the JSONL datasets, split by time, deduplicated, capped
per domain, mixed with replay, registered with their hashes)."""
