"""The capacity step test: offer POST /events (one event a request) at a rising, held rate until
p99 passes the limit, errors appear or the server no longer keeps up; report the highest rate
held, then p99 at half of it, and draw latency percentiles against the offered rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from loadgen.harness import PERCENTILES, ServerProcess, run_wrk

P99_LIMIT_MS = 50.0
KEPT_UP = 0.95  # achieved / offered below this: the server is not holding the rate


@dataclass
class Step:
    offered_rps: float
    achieved_rps: float
    latency_ms: dict[str, float]
    errors: int

    @property
    def held(self) -> bool:
        return (self.errors == 0 and self.latency_ms["99"] <= P99_LIMIT_MS
                and self.achieved_rps >= KEPT_UP * self.offered_rps)


def paced(server: ServerProcess, rate: float, seconds: int, connections: int) -> Step:
    figures = run_wrk(server.url + "/events", connections, seconds, rate=rate)
    return Step(rate, figures.rps, figures.latency_ms, figures.errors)


def step_test(server: ServerProcess, start: int, step: int, seconds: int, connections: int,
              max_steps: int = 40) -> dict:
    steps: list[Step] = []
    for n in range(max_steps):
        result = paced(server, start + n * step, seconds, connections)
        steps.append(result)
        mark = "held" if result.held else "NOT held"
        print(f"  offered {result.offered_rps:7,.0f}/s  achieved {result.achieved_rps:7,.0f}/s  "
              f"p50 {result.latency_ms['50']:6.2f}  p99 {result.latency_ms['99']:7.2f} ms  "
              f"errors {result.errors}  {mark}", flush=True)
        if not result.held:
            break
    held = [s for s in steps if s.held]
    highest = max((s.offered_rps for s in held), default=0.0)
    half = paced(server, highest / 2, seconds * 2, connections) if highest else None
    if half:
        print(f"  at half the highest rate ({highest / 2:,.0f}/s): p99 {half.latency_ms['99']:.2f} ms "
              f"(target <= 25 ms)")
    return {"p99_limit_ms": P99_LIMIT_MS, "highest_rate_held": highest,
            "steps": [asdict(s) | {"held": s.held} for s in steps],
            "half_rate": asdict(half) if half else None}


def draw(capacity: dict, path: Path) -> Path:
    """Latency percentiles against offered rate, with the p99 limit and the rate held (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = capacity["steps"]
    offered = [s["offered_rps"] for s in steps]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for p in PERCENTILES:
        ax.plot(offered, [s["latency_ms"][p] for s in steps], marker="o", label=f"p{p}")
    ax.axhline(capacity["p99_limit_ms"], color="grey", linestyle="--", label=f"p99 limit {capacity['p99_limit_ms']:.0f} ms")
    if capacity["highest_rate_held"]:
        ax.axvline(capacity["highest_rate_held"], color="green", linestyle=":",
                   label=f"highest held {capacity['highest_rate_held']:,.0f}/s")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate, POST /events with one event (requests/s)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("analytics-api capacity step test (embedded ClickHouse, 2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
