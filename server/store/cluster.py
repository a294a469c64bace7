"""The migrations on a ClickHouse cluster (CLICKHOUSE_CLUSTER): one source, rewritten per statement.

Each migration statement is first put in ClickHouse's canonical one-line form by the server's own
parser (`formatQuerySingleLine`), then rewritten by the rules below into statements that run
`ON CLUSTER`:

- a `*MergeTree` table `t` becomes `t_local` with `Replicated*MergeTree` (ZooKeeper/Keeper path
  `/clickhouse/tables/{shard}/{database}/{table}`, replica `{replica}`: the macros of each node)
  and a `Distributed` table named `t` over it, so the API and the reports keep their names.
  Tables with a `user_id` column are sharded by `cityHash64(user_id)`: a user's events stay on
  one shard, so per-user rollups (first seen, sessions, user hours) are complete on their shard
  and merging states across shards is exact; other tables by their first sort-key column;
- a materialized view reads `events_local` and writes the `_local` table on every shard (the
  rows a shard receives are rolled up there);
- `events_buffer` (a Buffer) sits on every node in front of the Distributed `events`;
- an ALTER goes to the `_local` tables (and, for ADD COLUMN, to the Distributed table too);
  `non_replicated_deduplication_window` becomes `replicated_deduplication_window`;
- views, and drops of views and of the Buffer table, get `ON CLUSTER`.

A backfill (`INSERT … SELECT … FROM events`) has no cluster form (it would have to run on one
replica of each shard): the runner skips it on an empty `events`, as on one node, and refuses to
migrate a cluster that holds events across such a migration (ClusterUnsupported).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

LOCAL = "_local"
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


class ClusterUnsupported(Exception):
    """A statement that has no form on a cluster."""


CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+) \((?P<columns>.*)\) ENGINE = (?P<engine>\w*MergeTree)"
    r"(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$")
CREATE_BUFFER = re.compile(r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+) AS (?P<source>\w+) ENGINE = Buffer\((?P<args>.*)\)$")
CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+) TO (?P<target>\w+) AS (?P<select>SELECT .*)$")
CREATE_VIEW = re.compile(r"^(?P<create>CREATE VIEW IF NOT EXISTS|CREATE OR REPLACE VIEW) (?P<name>\w+) AS (?P<select>SELECT .*)$")
ALTER = re.compile(r"^ALTER TABLE (?P<name>\w+) (?P<commands>\(.*\))$")
DROP = re.compile(r"^DROP (?P<kind>VIEW|TABLE) IF EXISTS (?P<name>\w+)(?P<sync> SYNC)?$")
INSERT = re.compile(r"^INSERT INTO ")
# One command of an ALTER in canonical form: `(ADD COLUMN …)`, separated by ', '.
ALTER_COMMAND = re.compile(r"\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)")


def local_tables(canonical: Iterable[str]) -> set[str]:
    """The names of the MergeTree tables the statements create (each gets a `_local` twin)."""
    return {match.group("name") for statement in canonical if (match := CREATE_TABLE.match(statement))}


def rewrite(canonical: str, cluster: str, local: set[str]) -> list[str]:
    """The cluster statements for one canonical statement (formatQuerySingleLine's output)."""
    on = f"ON CLUSTER {cluster}"
    if match := CREATE_TABLE.match(canonical):
        name, columns, engine = match.group("name"), match.group("columns"), match.group("engine")
        args = f"{REPLICA_PATH}, {match.group('args')}" if match.group("args") else REPLICA_PATH
        return [
            f"CREATE TABLE IF NOT EXISTS {name}{LOCAL} {on} ({columns}) ENGINE = Replicated{engine}({args}){match.group('rest')}",
            f"CREATE TABLE IF NOT EXISTS {name} {on} AS {name}{LOCAL} "
            f"ENGINE = Distributed({cluster}, currentDatabase(), {name}{LOCAL}, {sharding_key(columns, match.group('rest'))})",
        ]
    if match := CREATE_BUFFER.match(canonical):
        return [f"CREATE TABLE IF NOT EXISTS {match.group('name')} {on} AS {match.group('source')} "
                f"ENGINE = Buffer({match.group('args')})"]
    if match := CREATE_MV.match(canonical):
        target = match.group("target")
        if target not in local:
            raise ClusterUnsupported(f"a materialized view into {target}, which is not a MergeTree table of the migrations")
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {match.group('name')} {on} TO {target}{LOCAL} "
                f"AS {read_local(match.group('select'), local)}"]
    if match := CREATE_VIEW.match(canonical):
        return [f"{match.group('create')} {match.group('name')} {on} AS {match.group('select')}"]
    if match := ALTER.match(canonical):
        return rewrite_alter(match.group("name"), match.group("commands"), on, local)
    if match := DROP.match(canonical):
        if match.group("kind") == "TABLE" and match.group("name") in local:
            raise ClusterUnsupported(f"dropping {match.group('name')} (a table of data) is left to an operator")
        return [f"DROP {match.group('kind')} IF EXISTS {match.group('name')} {on}{match.group('sync') or ''}"]
    if INSERT.match(canonical):
        raise ClusterUnsupported("a backfill (INSERT … SELECT) would have to run on one replica of each shard")
    raise ClusterUnsupported(f"no cluster form for: {canonical[:120]}")


def rewrite_alter(name: str, commands: str, on: str, local: set[str]) -> list[str]:
    parts = ALTER_COMMAND.findall(commands)
    if ", ".join(parts) != commands:
        raise ClusterUnsupported(f"an ALTER of {name} whose commands could not be told apart")
    if name not in local:  # the Buffer table: on every node
        return [f"ALTER TABLE {name} {on} {commands}"]
    replicated = ", ".join(part.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
                           for part in parts)
    statements = [f"ALTER TABLE {name}{LOCAL} {on} {replicated}"]
    added = [part for part in parts if part.startswith("(ADD COLUMN ")]
    if added:  # the Distributed table has the columns too (no AFTER: it has no sort key to keep)
        statements.append(f"ALTER TABLE {name} {on} " + ", ".join(re.sub(r" AFTER \w+\)$", ")", p) for p in added))
    return statements


def read_local(select: str, local: set[str]) -> str:
    """A view's SELECT reading the shard's local tables instead of the Distributed ones."""
    for name in sorted(local, key=len, reverse=True):
        select = re.sub(rf"\b(FROM|JOIN) {name}\b(?!{LOCAL})", rf"\1 {name}{LOCAL}", select)
    return select


def sharding_key(columns: str, rest: str) -> str:
    if "`user_id` String" in columns:
        return "cityHash64(user_id)"
    order = re.search(r"ORDER BY \(?(\w+)", rest)
    return f"cityHash64({order.group(1)})" if order else "rand()"


def statements_for(statements: list[str], cluster: str, canonical: Callable[[str], str],
                   local: set[str]) -> list[str]:
    """Every cluster statement for a migration's statements, in order."""
    return [out for statement in statements for out in rewrite(canonical(statement), cluster, local)]
