"""`analytics-api seed-demo`: demo data made inside ClickHouse, and the views agreeing with raw scans."""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta

from server import cli
from server.reports import breakdowns, funnels, queries, rollups
from server.reports.params import report_range
from server.store import db
from tests import forkserver
from tests.servers import ROOT, query_in_process


def test_seed_demo_adds_exactly_the_events_asked_with_drop_off(settings, api, ch):
    assert db.seed_demo(ch, 20_000, days=20) == 20_000
    counts = dict(ch.query("SELECT event, uniqExact(user_id) FROM events GROUP BY event").result_rows)
    assert counts["view"] > counts["start_task"] > counts["finish_task"] > counts["pay"] > 0
    assert ch.command("SELECT countIf(session_id != '') > 0 AND countIf(session_id = '') > 0 FROM events") == 1


def test_views_agree_with_seed_004_queries_over_raw_events(settings, api, ch):
    db.seed_demo(ch, 20_000, days=20)
    today = date.today()
    params = {"from": (today - timedelta(days=9)).isoformat(), "to": today.isoformat()}
    from_views = api.get("/reports/active-users", params=params).json()
    # Seed 004's DAU/WAU/MAU query, with our 7- and 30-day windows, straight over `events`.
    raw = ch.query(
        """
        SELECT date,
               uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN CURRENT ROW AND CURRENT ROW) AS dau,
               uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) AS wau,
               uniqExactMerge(s) OVER (ORDER BY date RANGE BETWEEN 29 PRECEDING AND CURRENT ROW) AS mau
        FROM (SELECT toDate(dt) AS date, uniqExactState(user_id) AS s FROM events WHERE is_bot = 0 GROUP BY date
              ORDER BY date WITH FILL TO {to:Date} + 1)  -- days without events (today, just after midnight)
        ORDER BY date
        """, parameters={"to": today}
    ).result_rows
    by_date = {d.isoformat(): (dau, wau, mau) for d, dau, wau, mau in raw}
    assert [(r["dau"], r["wau"], r["mau"]) for r in from_views] == [by_date.get(r["date"], (0, 0, 0)) for r in from_views]
    assert sum(r["dau"] for r in from_views) > 0
    funnel = api.get("/reports/funnel", params={**params, "steps": "view,start_task,finish_task", "window": "3600"}).json()
    users = [s["users"] for s in funnel["steps"]]
    assert users[0] >= users[1] >= users[2] > 0


def test_session_spans_give_the_sessions_of_the_raw_events(settings, api, ch):
    """Session durations from the 15-minute spans equal cutting the raw events (30-minute gaps)."""
    from server.reports import queries
    from server.reports.params import ReportRange

    db.seed_demo(ch, 20_000, days=20)
    today = date.today()
    for tz in ("UTC", "Asia/Kolkata"):
        report = ReportRange(today - timedelta(days=12), today, tz)
        spans, raw = (queries.with_group(queries.sql(name), report) for name in ("session_durations", "session_durations_raw"))
        from_spans = ch.query(spans, parameters=report.parameters()).result_rows
        from_events = ch.query(raw, parameters=report.parameters()).result_rows
        assert len(from_spans) >= 12
        assert [(d, round(avg, 6), n) for d, avg, n in from_spans] == [(d, round(avg, 6), n) for d, avg, n in from_events]


def test_seed_demo_stores_the_configured_funnel_and_breakdown_days_that_reports_read(settings, api, ch):
    """The command's first round of the rollup job covers REPORT_FUNNELS and REPORT_BREAKDOWNS
    (the dashboard's funnel and referrer breakdown): the server's first reports read them, and
    they answer as the same reports from events."""
    assert cli.seed_demo(settings, 20_000, days=20) == 0
    assert ch.command("SELECT count() FROM funnel_days") > 0 and ch.command("SELECT count() FROM breakdown_days") > 0
    memory = rollups.StoredDays(settings.zones)
    report = report_range({})
    (steps, window), = settings.funnels
    stored = funnels.funnel(ch, report, list(steps), window, memory, settings.funnels)
    assert len(memory.days(ch, rollups.funnel_name(steps, window), report)) >= 18
    assert stored == queries.funnel(ch, report, list(steps), window) and stored[0] > stored[-1] > 0
    by, = settings.breakdowns
    assert len(memory.days(ch, rollups.BREAKDOWN_PREFIX + by, report)) >= 19
    assert breakdowns.breakdown(ch, report, by, 10, memory, settings.breakdowns) == queries.breakdown(ch, report, by, 10)


def test_the_rollups_command_runs_the_jobs_round_in_its_own_process(tmp_path):
    """`analytics-api rollups` (the server stopped): what `seed-demo --no-rollups` left unstored,
    stored, funnels and breakdowns included."""
    data = tmp_path / "data"
    env = {**os.environ, "CLICKHOUSE_URL": f"chdb://{data}", "LOG_DIR": str(tmp_path / "wal")}
    for command in (["seed-demo", "--events", "3000", "--days", "5", "--no-rollups"], ["rollups"]):
        done = forkserver.run([sys.executable, "-m", "server.cli", *command], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "finished report days" in done.stdout
    stored = query_in_process(data, "SELECT countIf(startsWith(report, 'funnel:')) > 0, countIf(startsWith(report, "
                                    "'breakdown:')) > 0, countIf(report = 'active_users') > 0 FROM report_days")
    assert stored == [[1, 1, 1]]
