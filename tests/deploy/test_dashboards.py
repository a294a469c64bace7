"""Every dashboard loads, every ClickHouse panel query runs on the embedded engine over demo
data with the plugin's macros expanded, and every metric a Prometheus panel reads is one the
server exports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.store import db
from tests.deploy.grafana import ALL, DASHBOARDS, TimeRange, clickhouse_targets, expand, load, prometheus_metrics


def test_there_are_the_two_dashboards_and_they_load():
    titles = {load(path)["title"] for path in DASHBOARDS}
    assert titles == {"analytics-api: Ingest", "analytics-api: Product"}
    for path in DASHBOARDS:
        dashboard = load(path)
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        assert all(panel["targets"] for panel in dashboard["panels"]), f"{path.name}: a panel has no query"


def test_the_expander_refuses_what_it_does_not_know():
    window = TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), 60)
    assert expand("WHERE $__timeFilter(dt)", window, {}) == (
        f"WHERE dt >= toDateTime({window.from_s}) AND dt <= toDateTime({window.to_s})")
    assert expand("$__conditionalAll(a = '${v}', $v)", window, {"v": ALL}) == "1=1"
    assert expand("$__conditionalAll(a = '${v}', $v)", window, {"v": "x"}) == "a = 'x'"
    with pytest.raises(ValueError, match="unknown dashboard variable"):
        expand("a = $nope", window, {})
    with pytest.raises(ValueError, match="not known"):
        expand("$__timeFilter_ms(dt)", window, {})


@pytest.fixture
def demo(settings, api, ch):
    """40 days of demo events, some events through the API, part of them still in the Buffer."""
    db.seed_demo(ch, 30_000, days=40)
    dt = datetime.now(UTC).isoformat()
    body = [{"dt": dt, "event": "view", "user_id": f"u{i}", "app_id": "web", "country": "DE"} for i in range(50)]
    assert api.post("/events", json=body).status_code == 202
    db.flush_buffer_table(ch)
    assert api.post("/events", json=body[:5]).status_code == 202
    return ch


def variable_choices(ch, dashboard) -> list[dict[str, str]]:
    """All for every variable, then a real value for each (the first the variable's query finds)."""
    names = [v["name"] for v in dashboard["templating"]["list"]]
    choices = [{name: ALL for name in names}]
    for variable in dashboard["templating"]["list"]:
        values = [row[0] for row in ch.query(variable["query"]).result_rows]
        assert values, f"variable {variable['name']} finds no values in demo data"
        choices.append({**choices[0], variable["name"]: values[0]})
    return choices


def run_every_panel(demo, path, run: Callable[[str], list]) -> None:
    dashboard = load(path)
    now = datetime.now(UTC) + timedelta(seconds=1)  # the macros cut to whole seconds
    windows = [TimeRange(now - timedelta(days=30), now, 3600), TimeRange(now - timedelta(minutes=15), now, 5)]
    failures, empty = [], []
    for variables in variable_choices(demo, dashboard):
        for window in windows:
            for title, sql in clickhouse_targets(dashboard):
                try:
                    rows = run(expand(sql, window, variables))
                except Exception as exc:  # collected: every failing panel is named at once
                    failures.append(f"{title} ({variables}, {window.interval_s}s): {str(exc).splitlines()[0]}")
                    continue
                if all(v == ALL for v in variables.values()) and window.interval_s == 3600 and not rows:
                    empty.append(title)
    assert not failures, "\n".join(failures)
    assert not empty, f"panels with no rows over 30 days of demo data: {empty}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_clickhouse_panel_query_runs_on_demo_data(demo, path):
    run_every_panel(demo, path, lambda sql: demo.query(sql).result_rows)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_clickhouse_panel_query_runs_through_the_clickhouse_http_interface(demo, api, path):
    """What Grafana's data source does with protocol HTTP and path /clickhouse on `make run`."""

    def over_http(sql: str) -> list:
        answer = api.post("/clickhouse/", params={"default_format": "JSONCompact"}, content=sql.encode())
        if answer.status_code != 200:
            raise RuntimeError(answer.text)
        return answer.json()["data"]

    run_every_panel(demo, path, over_http)


@pytest.mark.parametrize("app_id", [ALL, "web"])
def test_the_dau_panel_counts_what_the_report_api_counts(demo, api, app_id):
    """The product dashboard's DAU/WAU/MAU panel (masks over `user_hours`, as the report) gives
    the numbers of GET /reports/active-users for the same UTC days."""
    dashboard = load(next(path for path in DASHBOARDS if path.stem == "product"))
    sql = next(sql for title, sql in clickhouse_targets(dashboard) if title == "DAU / WAU / MAU")
    now = datetime.now(UTC) + timedelta(seconds=1)
    window = TimeRange(now - timedelta(days=30), now, 3600)
    rows = demo.query(expand(sql, window, {"app_id": app_id, "country": ALL})).result_rows
    params = {"from": window.start.date().isoformat(), "to": window.end.date().isoformat()}
    if app_id != ALL:
        params["app_id"] = app_id
    report = api.get("/reports/active-users", params=params, headers={"Cache-Control": "no-cache"}).json()
    panel = [{"date": day.isoformat(), "dau": dau, "wau": wau, "mau": mau} for day, dau, wau, mau in rows]
    assert panel == report
    assert sum(day["dau"] for day in panel) > 0


def test_every_prometheus_panel_metric_is_exported(api):
    # One accepted and one rejected event, so that labelled series have samples.
    dt = datetime.now(UTC).isoformat()
    assert api.post("/events", json={"dt": dt, "event": "view", "user_id": "u1"}).status_code == 202
    assert api.post("/events", json={"dt": dt, "user_id": "u1"}).status_code == 422
    exported = {sample.name for family in text_string_to_metric_families(api.get("/metrics").text)
                for sample in family.samples}
    wanted = set().union(*(prometheus_metrics(load(path)) for path in DASHBOARDS))
    assert wanted, "no Prometheus panels found"
    assert wanted <= exported, f"panels read metrics the server does not export: {sorted(wanted - exported)}"
