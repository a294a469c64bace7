"""The database: clickhouse-connect clients, the migrations runner and the SQL files' loader
(db.py), and the rewrite of migrations for a ClickHouse cluster (cluster.py)."""
