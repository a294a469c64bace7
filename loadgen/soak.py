"""The soak: one event a request, held at a rate (default: about half the capacity measured by
`make bench`) for minutes, with the server's RSS sampled every 10 s. Afterwards the server is
stopped (it flushes the Buffer) and the events stored are counted next to the 2xx answers.

    python -m loadgen.soak --minutes 10 --rate 4500

A benchmark: it prints figures and writes loadgen/results/soak-<time>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time

from loadgen.harness import RESULTS, ROOT, ServerProcess, embedded_server, run_wrk


def sample_rss(server: ServerProcess, every: float, samples: list, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.wait(every):
        samples.append((round(time.monotonic() - started), round(server.rss_mb(), 1)))


def count_stored(directory: str) -> int:
    from server.config import Settings
    from server.store import db

    client = db.connect(Settings.from_env({}, clickhouse_url=f"chdb://{directory}"))
    try:
        return int(client.command("SELECT count() FROM events"))
    finally:
        client.close()


def draw(samples: list, title: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=110)
    ax.plot([s / 60 for s, _ in samples], [mb for _, mb in samples], marker=".")
    ax.set_xlabel("minutes")
    ax.set_ylabel("server RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="Hold a rate for minutes and watch the server's memory.")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=4500, help="requests/s, one event each")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: `apt-get install wrk` (make soak does it)")
    seconds = round(args.minutes * 60)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        server = embedded_server(directory)
        samples: list[tuple[int, float]] = [(0, round(server.rss_mb(), 1))]
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(server, 10.0, samples, stop), daemon=True)
        sampler.start()
        try:
            print(f"soak: {args.rate:,.0f} requests/s for {seconds} s, RSS sampled every 10 s", flush=True)
            figures = run_wrk(server.url + "/events", args.connections, seconds, rate=args.rate)
        finally:
            stop.set()
            sampler.join()
            server.stop()
        stored = count_stored(f"{directory}/clickhouse")
    acknowledged = figures.requests - figures.errors
    settled = [mb for t, mb in samples if t >= 60] or [mb for _, mb in samples]
    report = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rate": args.rate, "seconds": seconds,
              "achieved_rps": figures.rps, "latency_ms": figures.latency_ms, "errors": figures.errors,
              "acknowledged": acknowledged, "stored": stored, "rss_mb": samples,
              "rss_after_1_min_mb": settled[0], "rss_end_mb": settled[-1], "rss_max_mb": max(settled)}
    print(f"achieved {figures.rps:,.0f} requests/s, p50 {figures.latency_ms['50']:.2f} ms, "
          f"p99 {figures.latency_ms['99']:.2f} ms, errors {figures.errors}")
    print(f"RSS: {samples[0][1]:.0f} MB at start, {settled[0]:.0f} MB after 1 min, {settled[-1]:.0f} MB at the end, "
          f"max {max(settled):.0f} MB after the first minute")
    # wrk counts the answers it read; requests still in flight when it stops may be stored too.
    verdict = "ok" if acknowledged <= stored <= acknowledged + args.connections else "FAILURE"
    print(f"acknowledged (2xx answers read by wrk) {acknowledged:,}, stored {stored:,}: {verdict}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"soak-{report['time'].replace(':', '')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    draw(samples, f"server RSS at {args.rate:,.0f} requests/s for {args.minutes:g} min", stem.with_suffix(".png"))
    print(f"written: {stem.with_suffix('.json').relative_to(ROOT)} and .png")
    if verdict != "ok":
        sys.exit(1)


if __name__ == "__main__":
    main()
