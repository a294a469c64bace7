"""The rule of one person per human (server/people/merges.py), join by join."""

from __future__ import annotations

from server.people.merges import People


def test_an_anonymous_visitor_who_signs_in_becomes_the_user():
    people = People()
    assert people.join("v:1", "alice") == "joined"
    assert people.person("v:1") == "alice"
    assert people.changed() == [("v:1", "alice")]


def test_joins_are_transitive_whichever_side_came_first():
    people = People()
    assert people.join("old-id", "alice") == "joined"  # alias: the old id is alice's
    assert people.join("v:1", "old-id") == "joined"  # a device that knew her by the old id
    assert people.person("v:1") == "alice"
    assert people.join("v:1", "alice") == "same"


def test_a_second_sign_in_on_a_shared_browser_is_refused():
    people = People()
    assert people.join("v:shared", "alice") == "joined"
    assert people.join("v:shared", "bob") == "refused"
    assert people.person("v:shared") == "alice"
    assert people.person("bob") == "bob"


def test_an_alias_of_an_identified_user_is_refused_unless_allowed():
    refused, allowed = People(), People()
    for people in (refused, allowed):
        people.join("v:1", "alice")
    assert refused.join("alice", "alice@new") == "refused"
    assert refused.person("v:1") == "alice"
    assert allowed.join("alice", "alice@new", allow_identified=True) == "joined"
    assert allowed.person("v:1") == allowed.person("alice") == "alice@new"  # her ids move with her
    assert allowed.changed() == [("alice", "alice@new"), ("v:1", "alice@new")]


def test_what_is_known_of_earlier_rounds_decides_too():
    people = People.of([("v:1", "alice"), ("v:2", "alice")])
    assert people.join("v:3", "v:2") == "joined"
    assert people.person("v:3") == "alice"
    assert people.join("v:1", "bob") == "refused"
    assert people.changed() == [("v:3", "alice")]
