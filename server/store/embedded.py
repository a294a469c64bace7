"""The embedded engine's client (imported only by processes that open the engine: it loads chDB)."""

from __future__ import annotations

import sys
from typing import Any, ClassVar


def _import_chdb_without_arrow() -> None:
    """Loads chDB with `import pyarrow` failing meanwhile: chDB imports pyarrow, and with it numpy,
    when it is loaded (0.14 s of CPU in each process that opens the engine, a third of what a
    server's imports cost), for its Arrow APIs only, which it makes optional and nothing here
    uses. A later `import pyarrow` in the same process works as usual."""
    blocked = "pyarrow" not in sys.modules
    if blocked:
        sys.modules["pyarrow"] = None  # type: ignore[assignment]  # what makes an import raise ImportError
    try:
        import chdb.state.sqlitelike  # noqa: F401  # loaded by the first connect otherwise
        import clickhouse_connect.driver._chdbclient  # noqa: F401
    finally:
        if blocked:
            del sys.modules["pyarrow"]


_import_chdb_without_arrow()

from clickhouse_connect.driver._chdbclient import ChdbClient  # noqa: E402

FactKey = tuple[str, str, frozenset[str]]


class EmbeddedClient(ChdbClient):
    """clickhouse-connect's client of the embedded engine (what `get_client(dsn="chdb://…")` makes),
    except that what it reads from the engine when made (version, time zone and the ~1,850 settings,
    8-10 ms of CPU) is read by the first client of the process only: those facts are the engine's,
    the same for every client on it, and a server makes ~7 clients, a test's app as many. (The
    `database` among those settings is then the first client's session's; the library only checks
    settings against them, and each client's own database is its handle's, set by USE.)

    It hooks two methods of clickhouse-connect's Client (1.12) that are not public: if a release
    renames them, every client reads the facts again, as before, and nothing else changes."""

    _facts: ClassVar[dict[FactKey, Any]] = {}
    _reading: FactKey | None = None

    def _fact_key(self, tz_source: str) -> FactKey:
        # The settings a client is made with decide which defaults the library adds (it adds none
        # that the caller set), so they are part of the key by name.
        return self.path, tz_source, frozenset(self._initial_settings or ())

    def _init_common_settings(self, tz_source: Any) -> None:
        key = self._fact_key(tz_source)
        facts = self._facts.get(key)
        if facts is None:
            self._reading = key
            super()._init_common_settings(tz_source)
        else:
            self._apply_init_result(facts)

    def _apply_init_result(self, result: Any) -> None:
        super()._apply_init_result(result)
        if self._reading is not None:
            self._facts[self._reading] = result
            self._reading = None
