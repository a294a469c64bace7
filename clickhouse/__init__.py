"""The SQL, installed as the package `server.sql` (pyproject.toml maps it here): migrations/,
reports/, demo/, erase/. Read with importlib.resources by server/store/db.py."""
