"""Cookieless visitor ids: `v:` + a keyed hash of (app_id, IP, User-Agent) under the day's salt.

Salts are random (32 bytes from `secrets`), one per UTC day, kept in ClickHouse (`visitor_salts`)
so that every process and replica gives a visitor the same id on the same day. `refresh()` makes
today's and tomorrow's salts when missing (tomorrow's ahead of time: at midnight every process
has it already) and deletes the salts of past days, in ClickHouse and here. The id of a visitor
changes at UTC midnight, and once a day's salt is deleted nobody can recompute or reverse it.

Two processes making the same day's salt at once both insert; every reader takes the earliest
(`argMin` by creation time, then the salt), and a process rereads after inserting, so they agree.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from datetime import UTC, date, datetime, timedelta

from clickhouse_connect.driver.client import Client

from server.store import db

log = logging.getLogger(__name__)

PREFIX = "v:"
DIGEST_BYTES = 8  # 64 bits: two visitors of one app on one day share an id with odds ~n²/2⁶⁵


def utc_today() -> date:
    return datetime.now(UTC).date()


class Visitors:
    def __init__(self, client: Client | None) -> None:
        self._client = client  # None: a subclass that gets the salts elsewhere (server/process/front.py)
        self._salts: dict[date, bytes] = {}
        self._lock = threading.Lock()  # refresh() runs in a thread; the event loop only reads

    def visitor_id(self, app_id: str, ip: str, user_agent: str, day: date | None = None) -> str:
        salt = self.salt(day or utc_today())
        digest = hashlib.blake2b(f"{app_id}\x00{ip}\x00{user_agent}".encode(), key=salt, digest_size=DIGEST_BYTES)
        return PREFIX + digest.hexdigest()

    def salt(self, day: date) -> bytes:
        found = self._salts.get(day)
        if found is None:
            # Only when refresh() has not run since the day began (it makes tomorrow's salt ahead).
            self.refresh(day)
            found = self._salts[day]
        return found

    def refresh(self, today: date | None = None) -> None:
        """Make today's and tomorrow's salts if missing, load them, forget past days'."""
        today = today or utc_today()
        assert self._client is not None
        with self._lock:
            days = [today, today + timedelta(days=1)]
            known = self._load(today)
            missing = [day for day in days if day not in known]
            if missing:
                db.insert_rows(self._client, "visitor_salts", ["day", "salt"],
                               [[day, secrets.token_hex(32)] for day in missing])
                known = self._load(today)
            self._salts = {day: bytes.fromhex(salt) for day, salt in known.items()}
            if self._client.query("SELECT count() FROM visitor_salts WHERE day < {today:Date}",
                                  parameters={"today": today}).result_rows[0][0]:
                self._client.command("DELETE FROM visitor_salts WHERE day < {today:Date}", parameters={"today": today})

    def _load(self, today: date) -> dict[date, str]:
        assert self._client is not None
        rows = self._client.query(
            "SELECT day, argMin(salt, (created, salt)) FROM visitor_salts WHERE day >= {today:Date} GROUP BY day",
            parameters={"today": today},
        ).result_rows
        return {day: salt for day, salt in rows}

    def salts(self) -> dict[date, bytes]:
        with self._lock:
            return dict(self._salts)

    def known_days(self) -> list[date]:
        return sorted(self._salts)
