"""The load generators: the locust scenario (locustfile.py, `analytics-api loadtest`), the
benchmarks (bench.py, bench_reports.py, bench_enrich.py), the soak and the profile."""
