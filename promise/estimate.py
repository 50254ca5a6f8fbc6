"""What the engine returns for one open outage: a promise and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the promise is what it is, in numbers a supervisor can check.

    ``similar`` past outages of ``segment`` were still open after as long as this one has been
    (``open_minutes``); ``fixed_within`` of them were fixed within the promised remaining time.
    """

    segment: str
    similar: int
    fixed_within: int
    open_minutes: float
    method_version: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "segment": self.segment,
            "similar": self.similar,
            "fixed_within": self.fixed_within,
            "open_minutes": round(self.open_minutes, 1),
            "method_version": self.method_version,
        }


@dataclass(frozen=True, slots=True)
class Estimate:
    """A suggested promise for one outage at one moment.

    ``deadline`` is the rounded clock time by which the outage is fixed with probability
    ``target``; it is None when there is too little evidence, and then ``next_update_at`` says
    when customers hear more. ``remaining_minutes`` is the unrounded estimate from ``made_at``.
    """

    made_at: datetime
    target: float
    deadline: datetime | None
    next_update_at: datetime | None
    remaining_minutes: float | None
    explanation: Explanation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (times in ISO 8601)."""
        return {
            "made_at": self.made_at.isoformat(),
            "target": self.target,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "next_update_at": (
                None if self.next_update_at is None else self.next_update_at.isoformat()
            ),
            "remaining_minutes": (
                None if self.remaining_minutes is None else round(self.remaining_minutes, 1)
            ),
            "explanation": self.explanation.to_dict(),
        }
