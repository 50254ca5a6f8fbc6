"""Request and response bodies of the outage feed, the promise and the supervisors' calls."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.storage.models import SERVICES

Country = Literal["NL", "BE"]
#: A 4-digit postcode area: Dutch and Belgian postcodes run from 1000 to 9999.
_PREFIX = re.compile(r"^[1-9][0-9]{3}$")


def _canonical_service(value: str) -> str:
    service = value.strip().lower()
    if service not in SERVICES:
        raise ValueError(f"unknown service {value!r}; expected one of {', '.join(SERVICES)}")
    return service


class _Strict(BaseModel):
    # A typo in a field name of the operations feed must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class OutageIn(_Strict):
    """A new outage reported by the network operations system."""

    reference: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The operations system's id of the outage, unique, e.g. STO-25-00123.",
    )
    service: str = Field(description=f"One of {', '.join(SERVICES)}.")
    cause: str = Field(min_length=1, max_length=32, description="e.g. fiber_cut, power_failure.")
    region_name: str = Field(min_length=1, max_length=100)
    country: Country | None = Field(default=None, description="NL or BE; required with postcodes.")
    started_at: AwareDatetime = Field(description="ISO 8601 with a UTC offset.")
    resolved_at: AwareDatetime | None = Field(
        default=None, description="Only for outages reported after they were fixed."
    )
    customers_affected: int = Field(default=0, ge=0)
    postcodes: list[str] = Field(
        default_factory=list,
        max_length=2000,
        description="4-digit postcode areas touched by the outage (1000-9999).",
    )
    description: str | None = Field(default=None, max_length=4000)
    attributes: dict[str, str] = Field(
        default_factory=dict, description="Extra fields the promise engine may segment on."
    )

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        return _canonical_service(value)

    @field_validator("postcodes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        return _check_prefixes(value)

    @model_validator(mode="after")
    def _consistent(self) -> OutageIn:
        if self.resolved_at is not None and self.resolved_at < self.started_at:
            raise ValueError("resolved_at is before started_at")
        if self.postcodes and self.country is None:
            raise ValueError("country is required when postcodes are given")
        return self


def _check_prefixes(value: list[str]) -> list[str]:
    bad = [p for p in value if not _PREFIX.match(p)]
    if bad:
        raise ValueError(f"postcodes must be 4-digit areas 1000-9999, got {bad[:5]}")
    return sorted(set(value))


class OutagePatch(_Strict):
    """A partial update: only the fields sent are changed. ``resolved_at`` resolves the outage."""

    service: str | None = None
    cause: str | None = Field(default=None, min_length=1, max_length=32)
    region_name: str | None = Field(default=None, min_length=1, max_length=100)
    country: Country | None = None
    started_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = Field(
        default=None,
        description="Resolves the outage: promises given are scored and subscribers are told.",
    )
    customers_affected: int | None = Field(default=None, ge=0)
    postcodes: list[str] | None = Field(
        default=None, max_length=2000, description="Replaces the outage's postcode areas."
    )
    description: str | None = Field(default=None, max_length=4000)
    attributes: dict[str, str] | None = Field(
        default=None, description="Replaces the outage's attributes."
    )
    state: dict[str, str] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="What the operations system records about the outage now (its state, who "
        "holds it, reassignments). Kept with the time it arrives, next to earlier ones; the "
        "promise model reads the outage as it stands. Unlike `attributes`, it never changes "
        "what was known at opening.",
    )

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        return None if value is None else _canonical_service(value)

    @field_validator("postcodes")
    @classmethod
    def _prefixes(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_prefixes(value)

    @model_validator(mode="after")
    def _no_nulls(self) -> OutagePatch:
        # Sending null for a field that cannot be empty is a mistake, not "leave unchanged".
        required = (
            "service",
            "cause",
            "region_name",
            "started_at",
            "customers_affected",
            "postcodes",
            "attributes",
            "state",
        )
        nulled = [name for name in required if name in self.model_fields_set]
        nulled = [name for name in nulled if getattr(self, name) is None]
        if "resolved_at" in self.model_fields_set and self.resolved_at is None:
            nulled.append("resolved_at (a resolved outage cannot be reopened)")
        if nulled:
            raise ValueError(f"cannot be null: {', '.join(nulled)}")
        return self


class OutageOut(BaseModel):
    """An outage as stored."""

    reference: str
    service: str
    cause: str
    region_name: str
    country: Country | None
    started_at: datetime
    resolved_at: datetime | None
    customers_affected: int
    postcodes: list[str]
    description: str | None
    attributes: dict[str, str]
    state: dict[str, str] = Field(
        default_factory=dict,
        description="The latest recorded state: every `state` sent so far, later values winning.",
    )


class PromiseOut(BaseModel):
    """The promise for an outage: what agents and customers are told."""

    outage: str = Field(description="The outage's reference.")
    service: str
    deadline: datetime | None = Field(
        description="Fixed by this time with probability `target`; null when there is too little "
        "evidence, then `next_update_at` says when customers hear more."
    )
    next_update_at: datetime | None
    target: float = Field(description="The probability the promise is kept.")
    status: Literal["suggested", "approved", "overridden"]
    explanation: dict[str, Any] = Field(
        description="segment, similar (past outages still open after as long as this one), "
        "fixed_within (of those, fixed within the promised time), open_minutes, method_version."
    )
    approved_by: str | None
    reason: str | None


#: The audit log records who acted from the credentials, never from the body: the logged-in
#: user's username, or "api" for an X-API-Key call. ``actor`` is still accepted so machine
#: clients written before logins keep working, but it is not recorded.
_ACTOR_DESCRIPTION = (
    "Ignored (kept for older clients): the audit log records the logged-in user, "
    'or "api" for X-API-Key calls.'
)


class ApproveIn(_Strict):
    """A supervisor approves the suggested promise."""

    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description=_ACTOR_DESCRIPTION
    )


class OverrideIn(_Strict):
    """A supervisor replaces the promise by a deadline of their own."""

    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description=_ACTOR_DESCRIPTION
    )
    deadline: AwareDatetime = Field(description="ISO 8601 with a UTC offset, in the future.")
    reason: str = Field(min_length=1, max_length=2000, description="Why (kept in the audit log).")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class TargetIn(_Strict):
    """The probability promises for a service should be kept."""

    target: float = Field(gt=0.0, lt=1.0)
    actor: str | None = Field(
        default=None, min_length=1, max_length=200, description=_ACTOR_DESCRIPTION
    )


class TargetOut(BaseModel):
    """A service's target; `updated_by` is null while the default applies."""

    service: str
    target: float
    updated_by: str | None
    updated_at: datetime | None


class TargetPreviewIn(_Strict):
    """A target to try out: nothing is stored."""

    target: float = Field(gt=0.0, lt=1.0)


class PromiseTimes(BaseModel):
    """When a promise says the outage is fixed, or (too little evidence) when the next update is."""

    deadline: datetime | None
    next_update_at: datetime | None


class TargetPreviewItem(BaseModel):
    """One open outage: its promise now, and what it would become with the new target."""

    outage: str = Field(description="The outage's reference.")
    current: PromiseTimes = Field(description="What everyone is told now.")
    suggested: PromiseTimes = Field(description="The engine's promise at the new target.")
    new: PromiseTimes = Field(
        description="What everyone would be told: the suggestion, unless a supervisor's "
        "approval or override stands (`standing`), which a new target does not change."
    )
    standing: Literal["approved", "overridden"] | None
    similar: int = Field(description="Similar past outages the suggestion rests on.")
    fixed_within: int = Field(description="Of those, fixed within the suggested time.")


class TargetPreviewOut(BaseModel):
    """The effect of a target on the open outages of one service, before it is saved."""

    service: str
    current_target: float
    target: float
    outages: list[TargetPreviewItem]
