"""Data management: import of history files (importer.py), export of a range (export.py) and
erasure of a user everywhere (erase.py)."""
