"""`cra dashboard`: the report's views served live on loopback, updating as work is recorded."""
