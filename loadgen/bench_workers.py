"""Single-event POSTs with 1, 2 and `auto` HTTP workers (the default: WEB_CONCURRENCY=auto, a
worker per core but the engine's), against the bare endpoint with as many, in one run.

    python -m loadgen.bench_workers [--workers 1,2,auto] [--seconds 10] [--connections 64]

The server runs on the embedded engine with the default ACK=log: with WEB_CONCURRENCY = 1 one
process; with N > 1 (and `auto` on 2 or more cores, N = cores - 1) N workers acknowledging into
their own logs plus the engine process that inserts them (server/process/group.py). The bare
endpoint (loadgen/bare_app.py) runs under `uvicorn --workers N`. wrk drives both from this
machine, so on few cores the load generator competes with the server: read the ratios, and the
figures as this machine's. Results go to loadgen/results/workers-<time>.json. A benchmark: it
prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from loadgen.harness import RESULTS, ROOT, ServerProcess, bare_server, embedded_server, embedded_shape, run_wrk


def measure(server: ServerProcess, connections: int, seconds: int) -> dict[str, float]:
    figures = run_wrk(server.url + "/events", connections, seconds, 1)
    return {"requests_per_second": round(figures.rps), "p50_ms": figures.latency_ms["50"],
            "p99_ms": figures.latency_ms["99"], "errors": figures.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,auto")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    rows = []
    for asked in args.workers.split(","):
        workers, engine, shape = embedded_shape(asked.strip())
        bare = bare_server(workers)
        try:
            time.sleep(1)  # every worker up
            base = measure(bare, args.connections, args.seconds)
        finally:
            bare.stop()
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as directory:
            server = embedded_server(directory, WEB_CONCURRENCY=asked.strip())
            try:
                time.sleep(1)
                ours = measure(server, args.connections, args.seconds)
            finally:
                server.stop()
        ratio = ours["requests_per_second"] / base["requests_per_second"]
        rows.append({"workers": workers, "engine_process": engine, "asked": asked, "bare": base, "server": ours,
                     "ratio": round(ratio, 3)})
        print(f"{asked} = {shape}: bare {base['requests_per_second']:>7,.0f} req/s (p99 {base['p99_ms']} ms)   "
              f"server {ours['requests_per_second']:>7,.0f} req/s (p50 {ours['p50_ms']} ms, p99 {ours['p99_ms']} ms, "
              f"{ours['errors']} errors)   server/bare {ratio:.3f}", flush=True)
    report = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count(),
              "connections": args.connections, "seconds": args.seconds, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"workers-{report['time'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
