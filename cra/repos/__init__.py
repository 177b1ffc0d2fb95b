"""Repo packages: `repos/NAME/{repo/, packages/, manifest.json}`, and their DB rows."""
