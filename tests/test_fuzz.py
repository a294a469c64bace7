"""Fuzzing: schemathesis generates requests for every operation of /openapi.json and sends them
to a real server process; hypothesis throws arbitrary bytes, content types and nesting at the
body parser. Never a 5xx, never an undocumented status, never a half-stored batch."""

from __future__ import annotations

import json

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from starlette.routing import Route

from server.config import Settings
from server.http import openapi
from server.process.app import create_app
from tests.servers import count_in_events, free_port, start_server


@pytest.fixture(scope="module")
def api_schema() -> schemathesis.schemas.BaseSchema:
    """/openapi.json as schemathesis reads it. Built when the test runs, not at collection: building
    the operations' tests (their coverage-phase examples) costs ~2.6 s of CPU, which every pytest-xdist
    worker would otherwise spend while collecting, though only one of them runs this file."""
    return schemathesis.openapi.from_dict(openapi.document(), config=FUZZ_CONFIG)


# Four of the paths that take events are the same route as another under a second name (server/ingest/
# routes.py): `/events/` is `/events`'s fast path, `/event/` and `/analytics/event[/]` are `/event`'s
# Starlette route. Their coverage phase (374 requests each, 28% of the run's) tried the same code four
# more times; they keep their explicit examples and generated requests. So does seed 000's
# `/api/v1/event/save`: its handler is `/event`'s (store_events) with `message_id`s in the answer.
ALIASES = ["POST /events/", "POST /event/", "POST /analytics/event", "POST /analytics/event/", "POST /api/v1/event/save"]
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {"operations": [{"include-name": ALIASES, "phases": {"coverage": {"enabled": False}}}]})


SCHEMA = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas read and set `item._nodeid`, which pytest 9 no longer has (it
    keeps the id in `_id`): without it the test fails at once with an AttributeError. A failing
    operation is named by the assertion's message, not by the subtest's id."""
    request.node._nodeid = request.node.nodeid


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: schemathesis.SerializationContext, value: object) -> bytes:
    """NDJSON bodies, one generated item a line (the schema describes them as the array of lines)."""
    lines = value if isinstance(value, list) else [value]
    return b"\n".join(json.dumps(line, default=str).encode() for line in lines)


def test_the_document_describes_every_route_and_method():
    app = create_app(Settings.from_env({}, clickhouse_url="chdb:///nonexistent"))
    paths = openapi.document()["paths"]
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path.replace(":path}", "}")
        assert path in paths, f"{route.path} is missing from /openapi.json"
        methods = {m.lower() for m in route.methods or []} - {"head"}
        assert methods <= set(paths[path]), f"{route.path}: {methods - set(paths[path])} undocumented"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    process = start_server(data, port, BODY_TIMEOUT_SECONDS="5")
    with requests.Session() as session:  # one kept-alive connection for every generated request
        # No proxies, .netrc or CA bundle from the environment: looking them up for every request
        # cost ~1.5 ms of CPU a request.
        session.trust_env = False
        yield f"http://127.0.0.1:{port}", session
    process.terminate()
    process.wait(timeout=60)


def answered_as_documented(server, case) -> None:
    base_url, session = server
    response = case.call(base_url=base_url, session=session, timeout=30)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    documented = set(case.operation.definition.raw["responses"])
    if case.method.lower() != case.operation.method.lower():
        documented.add("405")  # schemathesis also tries methods the route does not take
    assert str(response.status_code) in documented, f"{case.method} {case.path}: {response.status_code} undocumented"
    if response.status_code >= 400 and "x-clickhouse-exception-code" in response.headers:
        assert response.text.startswith("Code: ")  # /clickhouse/ answers errors as ClickHouse does
    elif response.status_code >= 400:
        assert response.json()["error"]["message"]


# Each of the 120 operations is a subtest: its explicit and coverage-phase examples, then 5 generated
# (~2,860 requests in all, counted on 2026-12-06; hypothesis's generation of the generated ones is most
# of this file's CPU, ~12 ms a request). `make test-slow` generates 100 an operation.
@SCHEMA.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx_or_an_undocumented_status(server, case):
    answered_as_documented(server, case)


@pytest.mark.slow
@SCHEMA.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx_or_an_undocumented_status_in_depth(server, case):
    answered_as_documented(server, case)


CONTENT_TYPES = st.sampled_from([
    "application/json", "application/x-ndjson", "application/x-www-form-urlencoded", "text/plain",
    "multipart/form-data; boundary=b", "application/xml", "", "application/json; charset=latin-1",
])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=40,
)
EVENT_LIKE = st.fixed_dictionaries(
    {"dt": st.one_of(st.just("2025-01-01T00:00:00Z"), st.integers(), st.text(max_size=20)),
     "event": st.one_of(st.just("view"), st.text(max_size=5), st.integers()),
     "user_id": st.one_of(st.just("u"), st.text(max_size=5), st.none())},
    optional={"amount": JSON_VALUES, "props": JSON_VALUES, "event_id": st.text(max_size=40)})
BODIES = st.one_of(
    st.binary(max_size=2000),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(EVENT_LIKE, min_size=1, max_size=20).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
)


@pytest.fixture(scope="module")
def parser_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("parser")
    port = free_port()
    process = start_server(data, port)
    sent = {"stored": 0}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:  # one kept-alive connection
        yield client, sent
    process.terminate()
    process.wait(timeout=60)
    # After the run: exactly the events the server acknowledged are stored (no half-batches).
    assert count_in_events(data) == sent["stored"]


@given(body=BODIES, content_type=CONTENT_TYPES)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_body_gets_2xx_or_4xx_and_is_stored_whole_or_not_at_all(parser_server, body, content_type):
    client, sent = parser_server
    response = client.post("/events", content=body, headers={"Content-Type": content_type} if content_type else {})
    assert response.status_code == 202 or 400 <= response.status_code < 500, response.text[:300]
    if response.status_code == 202:
        sent["stored"] += response.json()["accepted"]
    else:
        assert response.json()["error"]["message"]
