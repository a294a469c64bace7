"""What Grafana does to a panel before ClickHouse sees it, for running panel SQL in tests: the
grafana-clickhouse-datasource macros (expansions as the plugin documents them) and dashboard
variables. Anything left that looks like a macro or a variable is an error, not passed on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
ALL = "$__all"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval_s: int

    @property
    def from_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def to_s(self) -> int:
        return int(self.end.timestamp())


def _arguments(sql: str, open_at: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' is at open_at, and the index after ')'."""
    depth, quote, args, current = 0, None, [], []
    for i in range(open_at, len(sql)):
        ch = sql[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    raise ValueError(f"unclosed macro call in: {sql[open_at - 20:open_at + 40]!r}")


def _variable(sql: str, variables: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise ValueError(f"unknown dashboard variable ${name}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(?!__)(\w+)", value, sql)


def expand(sql: str, time_range: TimeRange, variables: dict[str, str]) -> str:
    """variables: name -> selected value, or ALL for the "All" option."""
    functions = {
        "conditionalAll": lambda cond, var: "1=1" if _variable(var, variables) == ALL else cond,
        "timeFilter": lambda col: f"{col} >= toDateTime({time_range.from_s}) AND {col} <= toDateTime({time_range.to_s})",
        "timeInterval": lambda col: f"toStartOfInterval(toDateTime({col}), INTERVAL {time_range.interval_s} second)",
    }
    out = sql
    while match := re.search(r"\$__(\w+)\(", out):
        name = match.group(1)
        if name not in functions:
            raise ValueError(f"macro $__{name}() is not known to this test's expander")
        args, after = _arguments(out, match.end() - 1)
        out = out[:match.start()] + functions[name](*args) + out[after:]
    out = (out.replace("$__fromTime", f"toDateTime({time_range.from_s})")
              .replace("$__toTime", f"toDateTime({time_range.to_s})")
              .replace("$__interval_s", str(time_range.interval_s)))
    out = _variable(out, variables)
    if "$" in out:
        raise ValueError(f"unexpanded macro or variable left in: {out!r}")
    return out


def clickhouse_targets(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, raw SQL) of every ClickHouse query: panels and variables."""
    found = [(panel["title"], target["rawSql"]) for panel in dashboard["panels"] for target in panel["targets"]
             if target["datasource"]["type"] == "grafana-clickhouse-datasource"]
    found += [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]
              if v.get("datasource", {}).get("type") == "grafana-clickhouse-datasource"]
    return found


PROMQL_WORDS = {"sum", "rate", "irate", "increase", "histogram_quantile", "by", "without", "avg", "max", "min",
                "count", "le"}


def prometheus_metrics(dashboard: dict) -> set[str]:
    """Metric names a dashboard's PromQL reads (label lists, matchers and ranges removed)."""
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] != "prometheus":
                continue
            expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", target["expr"])
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
            names |= {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}
    return names
