"""The process model: the services built from settings (services.py), the app assembled around
them (app.py), the checks before a start (preflight.py), and a group of HTTP workers in front of
one engine process (group.py, front.py, engine_routes.py)."""
