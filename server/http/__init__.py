"""HTTP plumbing every route shares: bodies, headers, CORS, keys, errors and JSON answers, the
OpenAPI document, and the handlers' way to the services (state.py). Imports nothing of the
rooms that use it."""
