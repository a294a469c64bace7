"""Client SQL, read-only: the query service (service.py) and its policy (policy.py), the SQL
console `POST /sql` (console.py) and ClickHouse's HTTP interface `/clickhouse/` (clickhouse_http.py)."""
