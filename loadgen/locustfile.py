"""Simulated app users for locust: sessions that open the main screen, view a course, start a
task, sometimes finish it, sometimes pay, with think time.

Three kinds of client: JSON (one event per request), form (seed 004's curl clients) and
batching (JSON arrays of 10–500 events). The whole run is held at a target rate of requests per
second (`--rps` or LOADGEN_RPS; 0 or less disables the generator, like seed 004's), not "as fast
as possible": each simulated user paces its requests at users ÷ rate seconds.

Every event carries the run's `app_id` (`--run-id` or LOADGEN_RUN_ID) so that the events of one
run can be counted in ClickHouse afterwards; acknowledged events are counted from the 202
bodies and written to `--ack-file` when the run ends.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from pathlib import Path

from locust import HttpUser, events, task
from locust.exception import StopUser

ACKNOWLEDGED = {"events": 0}


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    parser.add_argument("--rps", type=float, default=float(os.environ.get("LOADGEN_RPS", "300")),
                        help="requests per second for the whole run; 0 or less disables (LOADGEN_RPS)")
    parser.add_argument("--run-id", default=os.environ.get("LOADGEN_RUN_ID", "loadgen"),
                        help="app_id stamped on every event of this run (LOADGEN_RUN_ID)")
    parser.add_argument("--ack-file", default=os.environ.get("LOADGEN_ACK_FILE", ""),
                        help="where to write the count of acknowledged events at the end")


@events.quitting.add_listener
def write_acknowledged(environment, **_: object) -> None:
    path = environment.parsed_options.ack_file
    if path:
        Path(path).write_text(json.dumps(ACKNOWLEDGED))


class SimulatedUser(HttpUser):
    abstract = True

    def wait_time(self) -> float:
        """Pace by schedule, not by sleeping a fixed time after each request: a slow response
        does not lower the offered rate (users ÷ rate seconds between sends, per user)."""
        rps = self.environment.parsed_options.rps
        users = max(1, self.environment.runner.user_count if self.environment.runner else 1)
        now = time.monotonic()
        self.next_send = max(getattr(self, "next_send", now) + users / rps, now)
        return self.next_send - now

    def on_start(self) -> None:
        if self.environment.parsed_options.rps <= 0:
            raise StopUser()
        self.user_id = f"lg-{uuid.uuid4().hex[:12]}"
        self.new_session()

    def new_session(self) -> None:
        self.session_id = uuid.uuid4().hex
        self.steps = self.walk()

    def walk(self) -> list[dict]:
        """One session: main → course → start_task → (finish_task 60%) → (pay 20%)."""
        steps = [("view", "main", "screen", 0), ("view", "course", "screen", 0), ("start_task", "task", "start_button", 0)]
        if random.random() < 0.6:
            steps.append(("finish_task", "task", "finish_button", 0))
            if random.random() < 0.33:
                steps.append(("pay", "payment", "pay_button", random.choice([100, 250, 500])))
        return [self.event(*step) for step in steps]

    def event(self, name: str, screen: str, elem: str, amount: int) -> dict:
        return {"dt": round(time.time(), 3), "event": name, "user_id": self.user_id, "session_id": self.session_id,
                "screen": screen, "elem": elem, "amount": amount, "app_id": self.environment.parsed_options.run_id}

    def next_event(self) -> dict:
        if not self.steps:
            self.new_session()
        event = self.steps.pop(0)
        event["dt"] = round(time.time(), 3)
        return event

    def acknowledge(self, response) -> None:
        if response.status_code == 202:
            ACKNOWLEDGED["events"] += response.json()["accepted"]


class JsonClient(SimulatedUser):
    weight = 5

    @task
    def send(self) -> None:
        with self.client.post("/events", json=self.next_event(), name="json", catch_response=True) as r:
            self.acknowledge(r)


class FormClient(SimulatedUser):
    weight = 3

    @task
    def send(self) -> None:
        event = self.next_event()
        form = {"dt": str(event["dt"]), "event": event["event"], "userid": event["user_id"], "screen": event["screen"],
                "elem": event["elem"], "amount": str(event["amount"]), "app_id": event["app_id"],
                "session_id": event["session_id"]}
        with self.client.post("/events/", data=form, name="form", catch_response=True) as r:
            self.acknowledge(r)


class BatchingClient(SimulatedUser):
    weight = 2

    @task
    def send(self) -> None:
        batch = [self.next_event() for _ in range(random.randint(10, 500))]
        with self.client.post("/events", json=batch, name="batch", catch_response=True) as r:
            self.acknowledge(r)
