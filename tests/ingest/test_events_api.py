"""POST /events and the seed clients' routes, over HTTP, into the real engine.

The requests here are the README's and the seeds' own examples.
"""

from __future__ import annotations

import gzip
import time
import uuid
import zlib

import orjson
import pytest

from tests.conftest import SettlingClient, count_events


def stored(ch, columns: str = "toString(dt), event, user_id, screen, elem, amount") -> list[tuple]:
    return ch.query(f"SELECT {columns} FROM events_buffer ORDER BY dt, event").result_rows


# --- content types ------------------------------------------------------------------------

def test_form_post_from_the_readme(api, ch):
    r = api.post("/events/", data={"dt": "2025-03-01T11:11:11Z", "event": "test", "userid": "1"})
    assert r.status_code == 202
    assert r.json() == {"accepted": 1}
    assert stored(ch) == [("2025-03-01 11:11:11.000", "test", "1", "", "", 0)]


def test_multipart_form_converts_amount_to_an_integer(api, ch):
    fields = {"dt": "2020-01-01T14:16:34Z", "event": "pay", "userid": "1", "screen": "payment", "amount": "100"}
    r = api.post("/events/", files={k: (None, v) for k, v in fields.items()})
    assert r.status_code == 202, r.text
    assert stored(ch) == [("2020-01-01 14:16:34.000", "pay", "1", "payment", "", 100)]


def test_json_object_and_array(api, ch):
    view = {"dt": "2020-01-01T14:16:34Z", "userid": "1", "event": "view", "screen": "course", "elem": "screen", "amount": 100}
    assert api.post("/events/", json=view).json() == {"accepted": 1}
    batch = [dict(view, event=f"e{i}") for i in range(3)]
    assert api.post("/events", json=batch).json() == {"accepted": 3}
    assert count_events(ch) == 4
    assert ch.command("SELECT sum(amount) FROM events_buffer") == 400


def test_ndjson(api, ch):
    lines = [orjson.dumps({"dt": 1700000000 + i, "event": "tick", "user_id": "u"}) for i in range(5)]
    body = b"\n".join(lines) + b"\n\n"
    r = api.post("/events", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert r.json() == {"accepted": 5}
    assert count_events(ch) == 5


def test_text_plain_json_from_send_beacon(api, ch):
    body = orjson.dumps({"dt": "2025-01-01T00:00:00Z", "event": "leave", "user_id": "u"})
    r = api.post("/events", content=body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 202
    assert count_events(ch) == 1


@pytest.mark.parametrize("encoding,compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies(api, ch, encoding, compress):
    body = orjson.dumps([{"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": str(i)} for i in range(50)])
    r = api.post("/events", content=compress(body),
                 headers={"Content-Type": "application/json", "Content-Encoding": encoding})
    assert r.json() == {"accepted": 50}
    assert ch.command("SELECT uniqExact(user_id) FROM events_buffer") == 50


# --- aliases and types -------------------------------------------------------------------

def test_seed_aliases_map_to_columns(api, ch):
    event = {"event_time": 1589623711, "event_name": "click", "userid": "u1", "page": "main"}
    assert api.post("/events", json=event).status_code == 202
    event = {"timestamp": "2020-05-16T10:08:31.250+02:00", "event": "view", "user_id": 42, "screen": "home"}
    assert api.post("/events", json=event).status_code == 202
    assert stored(ch, "toString(dt), event, user_id, screen") == [
        ("2020-05-16 08:08:31.250", "view", "42", "home"),
        ("2020-05-16 10:08:31.000", "click", "u1", "main"),
    ]


@pytest.mark.parametrize(
    "given,expected",
    [
        ("2025-03-01T11:11:11Z", "2025-03-01 11:11:11.000"),
        ("2025-03-01T11:11:11.123456+00:00", "2025-03-01 11:11:11.123"),
        ("2025-03-01T14:11:11+03:00", "2025-03-01 11:11:11.000"),
        ("2025-03-01 11:11:11", "2025-03-01 11:11:11.000"),  # no offset: UTC
        (1740827471, "2025-03-01 11:11:11.000"),  # epoch seconds
        (1740827471.5, "2025-03-01 11:11:11.500"),
        (1740827471123, "2025-03-01 11:11:11.123"),  # epoch milliseconds
        ("1740827471", "2025-03-01 11:11:11.000"),  # form: epoch as text
    ],
)
def test_time_formats(api, ch, given, expected):
    assert api.post("/events", json={"dt": given, "event": "e", "user_id": "u"}).status_code == 202
    assert ch.command("SELECT toString(dt) FROM events_buffer") == expected


def test_unknown_scalars_go_to_props_and_event_id_is_kept(api, ch):
    event_id = str(uuid.uuid4())
    event = {
        "dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u", "event_id": event_id,
        "plan": "pro", "beta": True, "score": 1.5, "n": 3, "nothing": None,
        "props": {"ref": "mail"}, "session_id": "s1", "app_id": "a", "type": "event",
        "country": "TR", "region": "Marmara", "city": "Istanbul",
    }
    assert api.post("/events", json=event).status_code == 202
    row = ch.query(
        "SELECT toString(event_id), props, session_id, app_id, type, country, region, city, "
        "received_at > now64() - 60 FROM events_buffer"
    ).result_rows[0]
    assert row == (event_id, {"plan": "pro", "beta": "true", "score": "1.5", "n": "3", "ref": "mail"},
                   "s1", "a", "event", "TR", "Marmara", "Istanbul", 1)


def test_event_ids_are_generated_when_absent(api, ch):
    api.post("/events", json=[{"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u"}] * 3)
    assert ch.command("SELECT uniqExact(event_id) FROM events_buffer") == 3


# --- rejections ---------------------------------------------------------------------------

def errors_of(response) -> list[tuple]:
    return [(e["index"], e["field"], e["reason"]) for e in response.json()["error"]["errors"]]


def test_missing_required_fields_are_named(api, ch):
    r = api.post("/events", json=[{"dt": "2025-01-01T00:00:00Z", "event": "ok", "user_id": "u"}, {"screen": "x"}])
    assert r.status_code == 422
    assert [(i, f) for i, f, _ in errors_of(r)] == [(1, "dt"), (1, "event"), (1, "user_id")]
    assert count_events(ch) == 0  # all or nothing: the good event is not stored either


@pytest.mark.parametrize(
    "field,value,reason_part",
    [
        ("event", "", "must not be empty"),
        ("event", "bad\nname", "control characters"),
        ("event", 5, "must be a string"),
        ("amount", 1.5, "must be an integer"),
        ("amount", "12abc", "must be an integer"),
        ("amount", 2**63, "Int64"),
        ("amount", True, "boolean"),
        ("dt", "1999-12-31T23:59:59Z", "before 2000"),
        ("dt", "next tuesday", "not an ISO-8601"),
        ("dt", None, "must be a time"),
        ("screen", "x" * 1025, "at most 1024"),
        ("props", {"nested": {"a": 1}}, "must be a string, number or boolean"),
        ("tags", ["a", "b"], "must be a string, number or boolean"),
        ("event_id", "not-a-uuid", "not a UUID"),
        ("user_id", "", "must not be empty"),
    ],
)
def test_bad_fields_get_422_naming_the_field(api, ch, field, value, reason_part):
    event = {"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u", field: value}
    r = api.post("/events", json=event)
    assert r.status_code == 422
    [(index, named, reason)] = errors_of(r)
    assert (index, named) == (0, field)
    assert reason_part in reason
    assert count_events(ch) == 0


def test_time_too_far_ahead_is_rejected(api, ch):
    tomorrow_and_more = int(time.time()) + 86400 + 3600
    r = api.post("/events", json={"dt": tomorrow_and_more, "event": "e", "user_id": "u"})
    assert errors_of(r)[0][:2] == (0, "dt")
    assert "ahead" in errors_of(r)[0][2]


def test_a_field_given_under_two_names_is_rejected(api):
    r = api.post("/events", json={"dt": "2025-01-01T00:00:00Z", "event_time": 1, "event": "e", "user_id": "u"})
    assert errors_of(r) == [(0, "event_time", "given twice, as 'dt' and 'event_time'")]


def test_non_object_items(api):
    r = api.post("/events", json=[1, "x"])
    assert [(i, f) for i, f, _ in errors_of(r)] == [(0, "(event)"), (1, "(event)")]


@pytest.mark.parametrize(
    "body,content_type,status,field",
    [
        (b"{not json", "application/json", 400, "body"),
        (b'{"a": 1}\n{oops', "application/x-ndjson", 400, "body line 2"),
        (b"[]", "application/json", 400, "body"),
        (b"42", "application/json", 400, "body"),
        (b"\xff\xfe", "application/x-www-form-urlencoded", 400, "body"),
        (b"dt=1&dt=2&event=e&user_id=u", "application/x-www-form-urlencoded", 400, "dt"),
        (b"<xml/>", "application/xml", 415, "Content-Type"),
        (b"{}", "", 415, "Content-Type"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400, "body"),
    ],
)
def test_bad_bodies_get_clear_errors(api, ch, body, content_type, status, field):
    headers = {"Content-Type": content_type} if content_type else {}
    r = api.post("/events", content=body, headers=headers)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["field"] == field and error["message"]
    assert count_events(ch) == 0


def test_body_over_the_limit_is_413(make_settings):

    from server.process.app import create_app

    with SettlingClient(create_app(make_settings(max_body_bytes=20_000, max_events_per_request=3))) as api:
        big = orjson.dumps({"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u", "pad": "x" * 30_000})
        assert api.post("/events", content=big, headers={"Content-Type": "application/json"}).status_code == 413
        bomb = gzip.compress(b"[" + b" " * 10_000_000 + b"]")
        r = api.post("/events", content=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decoded body" in r.json()["error"]["message"]
        four = [{"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u"}] * 4
        r = api.post("/events", json=four)
        assert r.status_code == 413 and "at most 3" in r.json()["error"]["message"]


def test_bad_and_unknown_encodings(api):
    r = api.post("/events", content=b"not gzip", headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 400
    r = api.post("/events", content=b"{}", headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    assert r.status_code == 415 and r.json()["error"]["field"] == "Content-Encoding"
    truncated = gzip.compress(b'{"a": 1}')[:-8]
    r = api.post("/events", content=truncated, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 400


def test_file_uploads_are_refused(api, ch):
    r = api.post("/events", data={"event": "e"}, files={"dt": ("dt.txt", b"2025-01-01", "text/plain")})
    assert r.status_code == 400 and r.json()["error"]["field"] == "dt"


def test_unknown_route_and_method_are_json(api):
    assert api.get("/nope").json()["error"]["code"] == "not_found"
    r = api.get("/events")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


# --- the seed clients, unchanged ----------------------------------------------------------

SEED_000_EVENT = {
    "user_id": "Uu1qJzlfrxYxOS5z1kfAbmSA5pF2", "session_id": "9FDA74C2-AB57-4840-87D0-64324772B5A2",
    "app_id": "codeway", "type": "event", "event_name": "click", "event_time": 1589623711,
    "page": "main", "country": "TR", "region": "Marmara", "city": "Istanbul",
}


def test_seed_000_save_answers_a_message_id(api, ch):
    r = api.post("/api/v1/event/save", json=SEED_000_EVENT)
    assert r.status_code == 202
    message_id = r.json()["message_id"]
    assert ch.command("SELECT toString(event_id) FROM events_buffer") == message_id
    assert ch.query("SELECT app_id, screen, session_id FROM events_buffer").result_rows == [
        ("codeway", "main", "9FDA74C2-AB57-4840-87D0-64324772B5A2")
    ]


@pytest.mark.parametrize("path", ["/event", "/event/", "/analytics/event"])
def test_seed_001_and_002_routes(api, ch, path):
    body = {k: v for k, v in SEED_000_EVENT.items() if k != "app_id"}
    assert api.post(path, json=body).json() == {"accepted": 1}
    assert ch.query("SELECT event, country, city FROM events_buffer").result_rows == [("click", "TR", "Istanbul")]


SEED_003_BODY = {
    "user_activities": [
        {
            "operation": "insert", "table": "user_activities_table",
            "col_names": ["user_id", "event_type_id", "detail", "occured_at"],
            "col_types": ["integer", "integer", "string", "datetime"],
            "col_values": [1, 2, "logged in", "2021-03-30 06:12:44"],
        },
        {
            "operation": "insert", "table": "user_activities_table",
            "col_names": ["user_id", "event_type_id", "detail", "occured_at"],
            "col_types": ["integer", "integer", "string", "datetime"],
            "col_values": [2, 5, "Delete item with id 7", "2021-05-24 10:15:04"],
        },
    ]
}


def test_seed_003_activities_are_stored_with_their_columns(api, ch):
    r = api.post("/api-log/v1/", json=SEED_003_BODY)
    assert r.status_code == 202 and r.json() == {"accepted": 2}
    rows = ch.query("SELECT operation, target_table, col_names, col_types, col_values FROM activities "
                    "ORDER BY col_values[1]").result_rows
    assert rows[0] == ("insert", "user_activities_table", ["user_id", "event_type_id", "detail", "occured_at"],
                       ["integer", "integer", "string", "datetime"], ["1", "2", "logged in", "2021-03-30T06:12:44"])
    assert rows[1][4][2] == "Delete item with id 7"


def test_seed_003_wrong_type_names_activity_and_column(api, ch):
    body = orjson.loads(orjson.dumps(SEED_003_BODY))
    body["user_activities"][1]["col_values"][1] = "five"
    body["user_activities"][0]["operation"] = "upsert"
    r = api.post("/api-log/v1/", json=body)
    assert r.status_code == 422
    assert errors_of(r) == [
        (0, "operation", "must be one of insert, delete"),
        (1, "col_values[1] (event_type_id)", "integer value must be an integer, got a string"),
    ]
    assert ch.command("SELECT count() FROM activities") == 0


@pytest.mark.parametrize(
    "types,values,ok",
    [
        (["bytes"], ["aGVsbG8="], True), (["bytes"], ["not base64!"], False),
        (["float"], [1.5], True), (["numeric"], ["12.50"], True), (["bignumeric"], ["nan"], False),
        (["boolean"], [True], True), (["boolean"], [1], False),
        (["date"], ["2021-03-30"], True), (["date"], ["30/03/2021"], False),
        (["time"], ["06:12:44"], True), (["timestamp"], ["2021-03-30T06:12:44Z"], True),
        (["geography"], ["POINT(1 2)"], True), (["record"], [{"a": 1}], True), (["record"], ["a"], False),
        (["string"], [None], True), (["blob"], ["x"], False),
    ],
)
def test_seed_003_column_types(api, types, values, ok):
    activity = {"operation": "insert", "table": "t", "col_names": ["c"], "col_types": types, "col_values": values}
    r = api.post("/api-log/v1", json={"user_activities": [activity]})
    assert r.status_code == (202 if ok else 422), r.text


HOSTILE_BODIES = [
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b'{"dt": "2025-01-01T00:00:00Z", "event": "e", "user_id": "u", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
     "application/json"),
    (b'{"event": "\xff\xfe"}', "application/json"),
    (b'{"event": "\\ud800"}', "application/json"),
    (b"\x00" * 1000, "application/json"),
    (b"&".join(b"f%d=%d" % (i, i) for i in range(10_001)), "application/x-www-form-urlencoded"),
    (b"dt=" + b"9" * 5000 + b"&event=e&user_id=u&amount=" + b"9" * 5000, "application/x-www-form-urlencoded"),
    (b"\n".join([b"{}"] * 20) + b"\n\xff", "application/x-ndjson"),
    (b'{"dt": 1e400, "event": "e", "user_id": "u"}', "application/json"),
    (b'{"dt": 1, "event": "e", "user_id": 123456789012345678901234567890}', "application/json"),
    (b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
    (b"--b\r\nContent-Disposition: form-data; name=\"dt\"\r\n\r\n1\r\n", "multipart/form-data"),
]


@pytest.mark.parametrize("body,content_type", HOSTILE_BODIES)
def test_hostile_bodies_get_a_4xx_and_store_nothing(api, ch, body, content_type):
    r = api.post("/events", content=body, headers={"Content-Type": content_type})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]
    assert count_events(ch) == 0
    # The server is unharmed: the next client is served.
    assert api.post("/events", json={"dt": 1735689600, "event": "e", "user_id": "u"}).status_code == 202
