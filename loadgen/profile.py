"""Where the server's CPU goes under load: py-spy samples the Python threads that hold the GIL
(the event loop: HTTP, parsing, validation, encoding, batching), /proc gives the whole process's
CPU, and the difference is ClickHouse's native threads (the INSERTs, which release the GIL,
merges, materialized views) and the kernel's time in fdatasync.

    python -m loadgen.profile [--batch 1] [--seconds 10]

Each sample is put in the stage of its innermost frame that belongs to one (below). Prints the
shares; writes the raw stacks to loadgen/results/profile-<time>-b<batch>.txt for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from loadgen.harness import RESULTS, ROOT, embedded_server, run_wrk

RATE = 250  # samples a second
# stage -> substrings of a frame ("function (file:line)"); the first stage to match wins.
STAGES = {
    "ClickHouse client call (GIL held)": ("chdb", "clickhouse_connect"),
    "encode rows (orjson JSONEachRow)": ("encode_rows",),
    "validate": ("ingest/validate.py",),
    "parse body": ("ingest/parse.py",),
    "batcher": ("ingest/batcher.py",),
    "write-ahead log: group commit, fdatasync": ("ingest/committer.py", "ingest/wal.py"),
    "log consumer (reading the log)": ("ingest/consumer.py",),
    "dedup": ("ingest/dedup.py",),
    "metrics": ("server/metrics.py", "prometheus_client"),
    "route code, body read, responses": ("ingest/routes.py", "server/http/responses.py", "server/http/errors.py"),
    "HTTP: uvicorn, httptools, Starlette": ("uvicorn", "httptools", "starlette"),
    "event loop (uvloop, asyncio)": ("asyncio", "uvloop", "loop.c"),
}


def classify(raw: Path) -> tuple[collections.Counter, int]:
    shares: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        total += int(count)
        for frame in reversed(stack.split(";")):
            stage = next((s for s, keys in STAGES.items() if any(k in frame for k in keys)), None)
            if stage:
                shares[stage] += int(count)
                break
        else:
            shares["other Python"] += int(count)
    return shares, total


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile the ingest server under wrk load.")
    parser.add_argument("--batch", type=int, default=1, help="events per request (1 or 100 in make bench)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    pyspy = Path(sys.executable).with_name("py-spy")
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"profile-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}-b{args.batch}.txt"
    with tempfile.TemporaryDirectory(prefix="profile-") as directory:
        server = embedded_server(directory)
        try:
            figures = {}
            load = threading.Thread(target=lambda: figures.update(
                wrk=run_wrk(server.url + "/events", args.connections, args.seconds + 4, args.batch)))
            load.start()
            time.sleep(2)  # past wrk's connection ramp
            cpu_before = server.cpu_seconds()
            subprocess.run([str(pyspy), "record", "--pid", str(server.process.pid), "--duration", str(args.seconds),
                            "--rate", str(RATE), "--gil", "--format", "raw", "--output", str(raw)],
                           check=True, capture_output=True)
            cpu = server.cpu_seconds() - cpu_before
            load.join()
        finally:
            server.stop()
    shares, samples = classify(raw)
    gil_cpu = samples / RATE
    wrk = figures["wrk"]
    print(f"POST /events, {args.batch} event(s) a request, {args.connections} connections: "
          f"{wrk.rps * args.batch:,.0f} events/s while profiled (py-spy costs some)")
    print(f"server CPU {cpu / args.seconds:.2f} cores: Python holding the GIL {gil_cpu / args.seconds:.2f}, "
          f"ClickHouse native threads and GIL-free work {(cpu - gil_cpu) / args.seconds:.2f}")
    print(f"\n{'stage':40} {'of all CPU':>10} {'of GIL time':>12}")
    for stage, count in shares.most_common():
        print(f"{stage:40} {count / RATE / cpu:10.1%} {count / samples:12.1%}")
    print(f"{'ClickHouse native (INSERT, flush, merges)':40} {(cpu - gil_cpu) / cpu:10.1%}")
    print(f"\nraw stacks: {raw.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
