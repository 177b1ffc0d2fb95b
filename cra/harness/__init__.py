"""The harness: mine commits into tasks, plan them, score plans, validate with tests."""
