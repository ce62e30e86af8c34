"""The learners and activities a workload draws from, and realistic score marks.

Everything comes from one seeded RNG, so a seed gives the same users, activities, ids
and titles every time. Titles are deliberately not ASCII; scores step by 0.5, so they
are often fractional.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from connector.emulator.records import ActivityShape, Mark, SubscoreShape

SUBJECTS: Final = (
    "chemistry",
    "physics",
    "biology",
    "algebra",
    "geometry",
    "history",
    "literature",
    "french",
)
KINDS: Final = ("classtest", "quiz", "homework", "exam", "practice")
TITLES: Final = (
    "biochem",
    "Stöchiometrie",
    "Équilibres chimiques",
    "有機化学",
    "Θερμοδυναμική",
    "Кинетика",
    "álgebra lineal",
    "🧪 lab skills",
    "Ωmega — review",
    "reading comprehension",
    "Probabilités & statistiques",
    "مقدمة",
)
#: distinct marks kept per activity and kind: a million sessions share a few thousand
MARK_POOL_SIZE: Final = 96


def uuid_from(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (deterministic, unlike uuid.uuid4)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def make_activity(rng: random.Random, index: int) -> ActivityShape:
    subject = SUBJECTS[index % len(SUBJECTS)]
    kind = KINDS[(index // len(SUBJECTS)) % len(KINDS)]
    subscores = []
    for number in range(rng.randint(1, 4)):
        questions = rng.randint(2, 6)
        question_max = rng.choice((1.0, 1.0, 2.0, 0.5))
        subscores.append(
            SubscoreShape(
                id=f"subscore-{number + 1}",
                title=rng.choice(TITLES),
                num_questions=questions,
                max_score=questions * question_max,
                items=tuple(str(rng.randint(100_000_000, 999_999_999)) for _ in range(questions)),
            )
        )
    return ActivityShape(f"{subject}_{kind}{index + 1}", tuple(subscores))


def unscored_marks(activity: ActivityShape) -> tuple[Mark, ...]:
    """A session nobody has scored yet: nothing attempted, every score null."""
    return tuple((0, None, 0.0) for _ in activity.subscores)


def scored_marks(rng: random.Random, activity: ActivityShape) -> tuple[Mark, ...]:
    marks: list[Mark] = []
    for shape in activity.subscores:
        attempted = (
            shape.num_questions if rng.random() < 0.8 else rng.randint(0, shape.num_questions)
        )
        attempted_max = attempted * shape.question_max
        score = round(rng.uniform(0, attempted_max) * 2) / 2
        marks.append((attempted, score, attempted_max))
    return tuple(marks)


def pending_marks(rng: random.Random, activity: ActivityShape) -> tuple[Mark, ...]:
    """Pending Scoring: some subscores (the AI-scored ones) have no score yet."""
    marks = list(scored_marks(rng, activity))
    for index in range(len(marks)):
        if index == 0 or rng.random() < 0.5:
            attempted, _, attempted_max = marks[index]
            marks[index] = (attempted, None, attempted_max)
    return tuple(marks)


def rescored_marks(
    rng: random.Random, activity: ActivityShape, marks: tuple[Mark, ...]
) -> tuple[Mark, ...]:
    """The same attempt, one subscore's score moved by half a point or more."""
    changed = list(marks)
    index = rng.randrange(len(changed))
    attempted, score, attempted_max = changed[index]
    ceiling = attempted_max or 0.0
    old = score or 0.0
    options = [s / 2 for s in range(int(ceiling * 2) + 1) if s / 2 != old]
    new = rng.choice(options) if options else (None if score is not None else 0.0)
    changed[index] = (attempted, new, attempted_max)
    return tuple(changed)


def total_score(marks: tuple[Mark, ...]) -> float | None:
    """The session score: the sum of subscores, null while any is unscored."""
    total = 0.0
    for _, score, _ in marks:
        if score is None:
            return None
        total += score
    return total


@dataclass
class Catalog:
    users: list[str]
    activities: list[ActivityShape]
    #: per activity (by identity: loaded workloads may reuse an id with another shape):
    #: pools of scored and pending marks to draw from
    scored_pool: dict[int, list[tuple[Mark, ...]]]
    pending_pool: dict[int, list[tuple[Mark, ...]]]

    @classmethod
    def generate(cls, rng: random.Random, users: int, activities: int) -> Catalog:
        if users < 1 or activities < 1:
            raise ValueError("a workload needs at least one user and one activity")
        user_ids = [uuid_from(rng) for _ in range(users)]
        shapes = [make_activity(rng, i) for i in range(activities)]
        return cls.of(rng, user_ids, shapes)

    @classmethod
    def of(cls, rng: random.Random, users: list[str], activities: list[ActivityShape]) -> Catalog:
        return cls(
            users=users,
            activities=activities,
            scored_pool={
                id(a): [scored_marks(rng, a) for _ in range(MARK_POOL_SIZE)] for a in activities
            },
            pending_pool={
                id(a): [pending_marks(rng, a) for _ in range(MARK_POOL_SIZE // 4)]
                for a in activities
            },
        )

    def scored(self, rng: random.Random, activity: ActivityShape) -> tuple[Mark, ...]:
        pool = self.scored_pool.get(id(activity))
        return rng.choice(pool) if pool else scored_marks(rng, activity)

    def pending(self, rng: random.Random, activity: ActivityShape) -> tuple[Mark, ...]:
        pool = self.pending_pool.get(id(activity))
        return rng.choice(pool) if pool else pending_marks(rng, activity)
