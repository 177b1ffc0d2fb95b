"""cra: a toolkit that closes the self-improvement loop of a local coding agent."""

__version__ = "0.1.0"
