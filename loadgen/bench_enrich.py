"""The cost of enrichment per event, against validation alone in the same process (`make bench`
runs it; `python -m loadgen.bench_enrich` alone).

Per request of 1 and of 100 browser-like events (url with UTM, an external referrer, no user_id
so a visitor id is made): (base) validate_events; (enriched) Sender.of + validate_events +
Enricher.enrich, with the User-Agent and URL caches warm, as under steady traffic. Also a cold
User-Agent (a string not seen before) and the crawler list's share of it. Target: enrichment
under 5 us per event, warm.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request

from server.config import Settings
from server.ingest import useragent
from server.ingest.enrich import Enricher, Sender
from server.ingest.validate import Limits, validate_events
from server.ingest.visitors import Visitors
from server.store import db

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def per_call(function: Callable[[], object], seconds: float) -> float:
    """Seconds per call, over about `seconds` of calls (best of three rounds)."""
    best = float("inf")
    for _ in range(3):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 3:
            for _ in range(50):
                function()
            calls += 50
        best = min(best, elapsed / calls)
    return best


def request_from(ip: str, user_agent: str) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/events", "client": (ip, 5000), "query_string": b"",
             "headers": [(b"user-agent", user_agent.encode()), (b"content-type", b"application/json")]}
    return Request(scope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        settings = Settings.from_env({}, clickhouse_url=f"chdb://{Path(data)}")
        db.migrate(settings)
        client = db.connect(settings)
        visitors = Visitors(client)
        visitors.refresh()
        enricher = Enricher(visitors, settings.max_string_length)
        limits = Limits.from_settings(settings)
        request = request_from("81.2.69.160", CHROME)
        print(f"{'':40} {'base us/ev':>10} {'enriched':>10} {'enrich us/ev':>12} {'ratio':>6}")
        for size in (1, 100):
            items: list[dict[str, object]] = [{"dt": 1764000000000 + n, "event": "pageview", "app_id": "shop", "screen": "/p",
                      "url": "https://shop.example/p?utm_source=news&utm_campaign=nov",
                      "referrer": "https://www.google.com/"} for n in range(size)]

            def base(items: list[dict[str, object]] = items) -> None:
                validate_events(items, limits, anonymous=True)

            def enriched(items: list[dict[str, object]] = items) -> None:
                sender = Sender.of(request)
                rows, _ = validate_events(items, limits, anonymous=sender.can_be_visitor)
                enricher.enrich(rows, sender)

            enriched()  # warm the caches
            b, e = per_call(base, args.seconds) / size, per_call(enriched, args.seconds) / size
            print(f"{f'request of {size} event(s)':40} {b * 1e6:10.2f} {e * 1e6:10.2f} {(e - b) * 1e6:12.2f} "
                  f"{e / b:6.2f}")
        counter = iter(range(10**9))
        cold = per_call(lambda: useragent.describe(f"{CHROME} build/{next(counter)}"), args.seconds)
        crawler_list = per_call(lambda: useragent._crawler_list.isCrawler(f"{CHROME} b/{next(counter)}"), args.seconds)
        print(f"a User-Agent not seen before: {cold * 1e6:,.0f} us (the crawler list {crawler_list * 1e6:,.0f} us of it); "
              f"then cached ({useragent.CACHE_SIZE:,} strings)")
        client.close()


if __name__ == "__main__":
    main()
