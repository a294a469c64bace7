"""The configured funnels and breakdowns (REPORT_FUNNELS, REPORT_BREAKDOWNS) as reports of the
rollup job, beside its per-day reports (server/reports/rollups.py `refresh`'s `more`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from server.config import Settings
from server.reports import breakdowns, funnels
from server.reports.params import ReportRange


def stored_reports(settings: Settings) -> dict[str, Callable[[Client, ReportRange], dict[date, Any]]]:
    return {**funnels.stored(settings.funnels), **breakdowns.stored(settings.breakdowns)}
