"""Talking to models: the one client every stage uses, logging every call."""
