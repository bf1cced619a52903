"""The prediction log: every answer recorded off the request path, scored once the
results arrive (the track record)."""
