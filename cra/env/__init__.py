"""Offline environments: virtualenvs built from a repo package's `packages/` only."""
