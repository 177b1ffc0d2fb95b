"""A script the sandbox runs to build one commit's project (it imports nothing of cra)."""
