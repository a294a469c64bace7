"""The rule of one person per human: which joins of an anonymous id to a user are taken.

Every id is its own person until a join (identify, alias, `$identify`, an event naming both ids)
makes the anonymous id's person, and every id already theirs, the user's person. Joins are
decided one by one in the order the stitch job reads them (server/people/stitch.py), so the
result is transitive (an id joined to an id joined to a user is that user's) and exact. A join
is refused when the anonymous id's person is already identified (another id was joined to
them: two signed-in people on one browser, an alias between two known users), as PostHog does,
unless `allow_identified` (IDENTITY_MERGE_IDENTIFIED=true) says to join them anyway; a join of
two ids of one person changes nothing (`same`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["joined", "refused", "same"]


@dataclass
class People:
    """One app's persons as far as a round needs them: the person of each id joined to another,
    and each person's ids. Built from `persons` rows (id, person), changed by `join`."""

    person_of: dict[str, str] = field(default_factory=dict)
    ids_of: dict[str, set[str]] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)  # ids whose person a join changed

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str]]) -> People:
        people = cls()
        for one, person in rows:
            people.person_of[one] = person
            people.ids_of.setdefault(person, set()).add(one)
        return people

    def person(self, one: str) -> str:
        return self.person_of.get(one, one)

    def join(self, anonymous_id: str, user_id: str, allow_identified: bool = False) -> Outcome:
        """Decide one join; when taken, the anonymous id's person and every id of theirs become
        the user's person's."""
        source, target = self.person(anonymous_id), self.person(user_id)
        if source == target:
            return "same"
        if source in self.ids_of and not allow_identified:
            return "refused"
        moving = {source, *self.ids_of.pop(source, set())}
        for one in moving:
            self.person_of[one] = target
        self.ids_of.setdefault(target, set()).update(moving)
        self.moved |= moving
        return "joined"

    def changed(self) -> list[tuple[str, str]]:
        """(id, person) of every id whose person a join changed, in id order."""
        return [(one, self.person_of[one]) for one in sorted(self.moved)]
