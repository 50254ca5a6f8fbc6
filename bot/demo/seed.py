"""Demo data for "Lumen", a telecom and energy provider in the Netherlands and Flanders.

Two years of outage history plus a handful of active outages, generated deterministically from a
seed with numpy's ``Generator``. Every distribution and parameter below is documented (with the
percentiles measured from the generated data) in ``docs/demo-data.md``; keep the two in step.

Durations are heavy-tailed and differ per cause: a lognormal body with a cause-specific median
and sigma, for some causes mixed with a Pareto tail (the fiber cut that takes two days), and a
Weibull with shape < 1 for weather. Start times follow a per-cause seasonal, weekly and daily
profile in Dutch/Belgian local time (digging damage on weekday working hours, planned maintenance
in the night window, storms in autumn and winter).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import exists, insert, select
from sqlalchemy.orm import Session

from bot.promises.config import engine_config
from bot.promises.service import incident_of, score
from bot.settings import Settings, get_settings
from bot.storage.models import (
    Outage,
    OutageArea,
    OutboxMessage,
    Promise,
    PromiseGiven,
    Subscription,
)
from promise.engine import PromiseEngine
from promise.estimate import Estimate
from promise.incident import Incident

LOCAL_TZ: Final = ZoneInfo("Europe/Amsterdam")  # Brussels keeps the same clock
HISTORY_DAYS: Final = 730
#: Shortest and longest duration any outage can have, in minutes.
MIN_DURATION_MIN: Final = 5.0
MAX_DURATION_MIN: Final = 10 * 24 * 60.0

Country = Literal["NL", "BE"]


# -- regions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Region:
    """A service region: a city with its real 4-digit postcode areas."""

    name: str
    country: Country
    prefixes: tuple[str, ...]
    #: Relative share of Lumen's customers (and so of outages) in this region.
    weight: float


def _nl(first: int, last: int) -> tuple[str, ...]:
    return tuple(str(n) for n in range(first, last + 1))


def _be(*codes: int) -> tuple[str, ...]:
    # Belgian postcodes are sparse: list the real ones rather than a range.
    return tuple(str(code) for code in codes)


REGIONS: Final[tuple[Region, ...]] = (
    Region("Amsterdam", "NL", _nl(1011, 1109), 14.0),
    Region("Rotterdam", "NL", _nl(3011, 3089), 10.0),
    Region("Den Haag", "NL", _nl(2511, 2597), 8.0),
    Region("Utrecht", "NL", _nl(3511, 3585), 7.0),
    Region("Eindhoven", "NL", _nl(5611, 5658), 4.0),
    Region("Groningen", "NL", _nl(9711, 9747), 4.0),
    Region("Tilburg", "NL", _nl(5011, 5049), 3.0),
    Region("Breda", "NL", _nl(4811, 4838), 3.0),
    Region("Nijmegen", "NL", _nl(6511, 6546), 3.0),
    Region("Arnhem", "NL", _nl(6811, 6846), 3.0),
    Region("Haarlem", "NL", _nl(2011, 2037), 3.0),
    Region("Leiden", "NL", _nl(2311, 2334), 2.0),
    Region("Zwolle", "NL", _nl(8011, 8043), 2.0),
    Region("Maastricht", "NL", _nl(6211, 6229), 2.0),
    Region("Amersfoort", "NL", _nl(3811, 3829), 2.0),
    Region(
        "Antwerpen",
        "BE",
        _be(2000, 2018, 2020, 2030, 2040, 2050, 2060, 2100, 2140, 2150, 2170, 2180, 2600, 2610,
            2660),
        8.0,
    ),
    Region("Gent", "BE", _be(9000, 9030, 9031, 9032, 9040, 9041, 9042, 9050, 9051, 9052), 4.0),
    Region(
        "Brussel",
        "BE",
        _be(1000, 1020, 1030, 1040, 1050, 1060, 1070, 1080, 1081, 1082, 1083, 1090, 1120, 1130,
            1140, 1150, 1160, 1170, 1180, 1190, 1200, 1210),
        6.0,
    ),
    Region("Leuven", "BE", _be(3000, 3001, 3010, 3012, 3018), 2.0),
    Region("Brugge", "BE", _be(8000, 8200, 8310), 2.0),
    Region("Mechelen", "BE", _be(2800, 2801, 2811, 2812), 2.0),
    # Hasselt's 3511 is also Utrecht's 3511: a bare "3511" is genuinely ambiguous.
    Region("Hasselt", "BE", _be(3500, 3501, 3510, 3511, 3512), 1.5),
    Region("Kortrijk", "BE", _be(8500, 8501, 8510, 8511), 1.5),
)  # fmt: skip


# -- start-time profiles ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartProfile:
    """Relative outage intensity by local month, hour and weekday/weekend."""

    months: tuple[float, ...]  # January .. December
    hours: tuple[float, ...]  # 00 .. 23 local time
    weekend: float  # factor applied on Saturday and Sunday

    @property
    def peak(self) -> float:
        """Upper bound of the intensity, for rejection sampling."""
        return max(self.months) * max(self.hours) * max(1.0, self.weekend)

    def intensity(self, local: datetime) -> float:
        """Relative intensity at a local time."""
        factor = self.months[local.month - 1] * self.hours[local.hour]
        return factor * (self.weekend if local.weekday() >= 5 else 1.0)


def _hours(default: float, **ranges: float) -> tuple[float, ...]:
    # ranges like h8_16=1.0 set hours 8..16 inclusive.
    values = [default] * 24
    for key, value in ranges.items():
        first, last = (int(part) for part in key[1:].split("_"))
        for hour in range(first, last + 1):
            values[hour] = value
    return tuple(values)


PROFILES: Final[dict[str, StartProfile]] = {
    # Excavation damage: contractors dig on weekday working hours, less in winter frost.
    "digging": StartProfile(
        months=(0.6, 0.7, 0.9, 1.0, 1.1, 1.1, 0.9, 0.8, 1.1, 1.1, 0.9, 0.6),
        hours=_hours(0.05, h7_7=0.5, h8_16=1.0, h17_17=0.5, h18_19=0.15),
        weekend=0.15,
    ),
    # Planned work in the 00:00-06:00 window; change freezes in summer holidays and December.
    "planned": StartProfile(
        months=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.6, 0.6, 1.0, 1.0, 1.0, 0.5),
        hours=_hours(0.01, h0_5=1.0),
        weekend=0.2,
    ),
    # Autumn and winter storms, summer thunderstorms in the afternoon.
    "weather": StartProfile(
        months=(1.3, 1.2, 1.0, 0.6, 0.5, 0.7, 0.9, 0.9, 0.6, 1.0, 1.3, 1.4),
        hours=_hours(1.0, h14_20=1.3),
        weekend=1.0,
    ),
    # Network load peaks on winter evenings and summer heat.
    "load": StartProfile(
        months=(1.4, 1.2, 0.9, 0.6, 0.5, 0.8, 1.1, 1.1, 0.6, 0.7, 1.0, 1.4),
        hours=_hours(0.8, h0_6=0.3, h7_9=1.1, h17_21=1.6),
        weekend=0.9,
    ),
    # Releases go out on weekday office hours.
    "software": StartProfile(
        months=(1.0,) * 12,
        hours=_hours(0.5, h9_17=1.3),
        weekend=0.4,
    ),
    # Hardware fails any time, a bit more under load and in the cold.
    "random": StartProfile(
        months=(1.1, 1.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1),
        hours=_hours(1.0, h0_6=0.5),
        weekend=0.9,
    ),
}


# -- causes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DurationModel:
    """Duration distribution in minutes.

    ``lognormal``: median ``median`` (= exp(mu)) and shape ``sigma``; with probability
    ``tail_p`` the draw comes instead from a Pareto tail with scale ``tail_min`` and index
    ``tail_alpha`` (x = tail_min * (1 + Lomax(alpha))). ``weibull``: shape ``shape`` and scale
    ``scale``. Everything is clipped to [MIN_DURATION_MIN, MAX_DURATION_MIN].
    """

    kind: Literal["lognormal", "weibull"]
    median: float = 0.0
    sigma: float = 0.0
    tail_p: float = 0.0
    tail_min: float = 0.0
    tail_alpha: float = 0.0
    shape: float = 0.0
    scale: float = 0.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` durations in minutes."""
        if self.kind == "weibull":
            values = self.scale * rng.weibull(self.shape, n)
        else:
            values = rng.lognormal(np.log(self.median), self.sigma, n)
            if self.tail_p > 0:
                in_tail = rng.random(n) < self.tail_p
                tail = self.tail_min * (1.0 + rng.pareto(self.tail_alpha, n))
                values = np.where(in_tail, tail, values)
        return np.clip(values, MIN_DURATION_MIN, MAX_DURATION_MIN)


@dataclass(frozen=True, slots=True)
class CauseModel:
    """How one cause of outages behaves in the demo world."""

    cause: str
    per_year: float
    #: Probability of each service given this cause.
    services: Mapping[str, float]
    duration: DurationModel
    #: Customers affected: lognormal with this median and sigma.
    customers_median: float
    customers_sigma: float
    profile: str
    description: str


CAUSE_MODELS: Final[tuple[CauseModel, ...]] = (
    CauseModel(
        "fiber_cut", 230, {"internet": 0.55, "tv": 0.25, "landline": 0.20},
        DurationModel("lognormal", median=390, sigma=0.55, tail_p=0.15, tail_min=900,
                      tail_alpha=1.5),
        650, 1.0, "digging",
        "Glasvezelkabel beschadigd bij graafwerkzaamheden.",
    ),
    CauseModel(
        "cable_damage", 100, {"electricity": 1.0},
        DurationModel("lognormal", median=210, sigma=0.6, tail_p=0.10, tail_min=600,
                      tail_alpha=1.6),
        900, 1.0, "digging",
        "Stroomkabel beschadigd bij graafwerkzaamheden.",
    ),
    CauseModel(
        "power_failure", 150, {"internet": 0.40, "tv": 0.20, "landline": 0.15, "mobile": 0.25},
        DurationModel("lognormal", median=75, sigma=0.7, tail_p=0.05, tail_min=360,
                      tail_alpha=2.0),
        1200, 1.1, "random",
        "Stroomuitval op een netwerklocatie.",
    ),
    CauseModel(
        "equipment_failure", 350,
        {"internet": 0.35, "tv": 0.15, "landline": 0.10, "mobile": 0.20, "electricity": 0.15,
         "gas": 0.05},
        DurationModel("lognormal", median=170, sigma=0.75, tail_p=0.08, tail_min=600,
                      tail_alpha=1.7),
        300, 1.3, "random",
        "Defecte apparatuur in het netwerk.",
    ),
    CauseModel(
        "software", 180, {"internet": 0.35, "tv": 0.35, "mobile": 0.20, "landline": 0.10},
        DurationModel("lognormal", median=50, sigma=0.85, tail_p=0.04, tail_min=240,
                      tail_alpha=1.8),
        4000, 1.4, "software",
        "Softwarefout in een centraal systeem.",
    ),
    CauseModel(
        "maintenance", 300,
        {"internet": 0.30, "tv": 0.20, "mobile": 0.20, "landline": 0.05, "electricity": 0.15,
         "gas": 0.10},
        DurationModel("lognormal", median=95, sigma=0.30),
        350, 0.8, "planned",
        "Gepland onderhoud.",
    ),
    CauseModel(
        "weather", 170, {"electricity": 0.35, "mobile": 0.25, "internet": 0.25, "tv": 0.15},
        DurationModel("weibull", shape=0.75, scale=260),
        2000, 1.4, "weather",
        "Schade door storm of onweer.",
    ),
    CauseModel(
        "overload", 75, {"electricity": 0.80, "mobile": 0.20},
        DurationModel("lognormal", median=55, sigma=0.5),
        700, 0.9, "load",
        "Overbelasting van het net.",
    ),
    CauseModel(
        "gas_leak", 60, {"gas": 1.0},
        DurationModel("lognormal", median=320, sigma=0.7, tail_p=0.10, tail_min=1200,
                      tail_alpha=1.6),
        60, 1.0, "digging",
        "Gaslek; de gastoevoer is uit veiligheid afgesloten.",
    ),
)  # fmt: skip

#: Causes whose history outages may be left open past their typical duration.
LONG_RUNNING_CAUSES: Final = frozenset(
    {"fiber_cut", "cable_damage", "equipment_failure", "weather", "gas_leak"}
)


# -- generated data -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOutage:
    """One generated outage, before it is stored."""

    reference: str
    service: str
    cause: str
    region_name: str
    country: Country
    started_at: datetime
    resolved_at: datetime | None
    customers_affected: int
    prefixes: tuple[str, ...]
    description: str | None
    #: A history outage deliberately still open beyond its cause's typical duration.
    long_running: bool = False


@dataclass(frozen=True, slots=True)
class _ActiveSpec:
    service: str
    cause: str
    region_name: str
    country: Country
    prefixes: tuple[str, ...]
    minutes_ago: int
    customers: int
    description: str


#: The active outages every demo has; the integration tests rely on the first three.
FIXED_ACTIVE: Final[tuple[_ActiveSpec, ...]] = (
    _ActiveSpec(
        "internet", "fiber_cut", "Utrecht centrum", "NL", ("3511", "3512"), 95, 1840,
        "Glasvezelkabel beschadigd bij graafwerkzaamheden aan de Catharijnesingel.",
    ),
    _ActiveSpec(
        "tv", "software", "Amsterdam centrum", "NL", ("1011", "1012"), 40, 620,
        "Zenders vallen weg na een software-update van het tv-platform.",
    ),
    _ActiveSpec(
        "electricity", "cable_damage", "Antwerpen", "BE", ("2000", "2018"), 180, 4300,
        "Middenspanningskabel beschadigd; de netbeheerder herstelt de kabel.",
    ),
    _ActiveSpec(
        "mobile", "power_failure", "Rotterdam Noord", "NL", ("3031", "3032", "3033"), 25, 2600,
        "Zendmast zonder stroom; mobiel bereik beperkt.",
    ),
    _ActiveSpec(
        "gas", "gas_leak", "Groningen", "NL", ("9712",), 70, 45,
        "Gaslek bij werkzaamheden; de gastoevoer is uit veiligheid afgesloten.",
    ),
    _ActiveSpec(
        "landline", "equipment_failure", "Gent", "BE", ("9000", "9030"), 130, 380,
        "Defecte kaart in een wijkcentrale.",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SeedReport:
    """What :func:`seed_demo` stored."""

    seed: int
    now: datetime
    outages: int
    resolved: int
    areas: int
    #: References of every active outage (fixed ones and long-running history ones).
    active: tuple[str, ...]
    #: References of history outages still open beyond their typical duration.
    long_running: tuple[str, ...]
    first_started_at: datetime
    causes: dict[str, int] = field(default_factory=dict)
    #: The promise history (``seed_demo(..., promise_history=True)``); None without it.
    promises: PromiseHistoryReport | None = None


def _as_utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).replace(microsecond=0)


def _sample_starts(
    rng: np.random.Generator, profile: StartProfile, n: int, start: datetime, end: datetime
) -> list[datetime]:
    """``n`` start times in [start, end) following ``profile``, by rejection sampling."""
    span = (end - start).total_seconds()
    accepted: list[datetime] = []
    while len(accepted) < n:
        batch = max(64, 4 * (n - len(accepted)))
        offsets = rng.random(batch) * span
        thresholds = rng.random(batch) * profile.peak
        for offset, threshold in zip(offsets.tolist(), thresholds.tolist(), strict=True):
            moment = start + timedelta(seconds=int(offset))
            if threshold < profile.intensity(moment.astimezone(LOCAL_TZ)):
                accepted.append(moment)
                if len(accepted) == n:
                    break
    return accepted


def _choose(rng: np.random.Generator, options: Mapping[str, float], n: int) -> list[str]:
    names = list(options)
    weights = np.array([options[name] for name in names], dtype=float)
    picks = rng.choice(len(names), size=n, p=weights / weights.sum())
    return [names[i] for i in picks.tolist()]


def _areas_for(
    rng: np.random.Generator, region: Region, customers: int, avoid: Sequence[str] = ()
) -> tuple[str, ...]:
    # Roughly one 4-digit area per 1,500 affected customers, as a contiguous run of areas.
    candidates = [p for p in region.prefixes if p not in avoid] or list(region.prefixes)
    count = int(min(12, len(candidates), 1 + rng.poisson(customers / 1500.0)))
    first = int(rng.integers(0, len(candidates) - count + 1))
    return tuple(candidates[first : first + count])


def _quantile_minutes(durations: Sequence[float], q: float) -> float:
    return float(np.quantile(np.asarray(durations, dtype=float), q)) if durations else 0.0


@dataclass(slots=True)
class _Draft:
    service: str
    cause: str
    region: Region
    started_at: datetime
    resolved_at: datetime | None
    customers: int
    prefixes: tuple[str, ...]
    description: str
    long_running: bool = False

    @property
    def minutes(self) -> float:
        end = self.resolved_at if self.resolved_at is not None else self.started_at
        return (end - self.started_at).total_seconds() / 60.0


def generate_demo_outages(now: datetime, seed: int = 7) -> list[DemoOutage]:
    """Generate Lumen's outages for the two years up to ``now`` (pure; no database).

    Deterministic for a given ``now`` and ``seed``. Returned oldest first with references
    ``STO-<yy>-<nnnnn>`` numbered per (local) year of start.
    """
    now = _as_utc(now)
    rng = np.random.default_rng(seed)
    history_start = now - timedelta(days=HISTORY_DAYS)
    history_end = now - timedelta(hours=6)
    region_weights = np.array([r.weight for r in REGIONS], dtype=float)
    region_weights /= region_weights.sum()

    drafts: list[_Draft] = []
    for model in CAUSE_MODELS:
        n = int(rng.poisson(model.per_year * HISTORY_DAYS / 365.0))
        starts = _sample_starts(rng, PROFILES[model.profile], n, history_start, history_end)
        durations = model.duration.sample(rng, n).tolist()
        services = _choose(rng, model.services, n)
        customers = np.clip(
            np.round(rng.lognormal(np.log(model.customers_median), model.customers_sigma, n)),
            3,
            250_000,
        ).astype(int)
        regions = rng.choice(len(REGIONS), size=n, p=region_weights).tolist()
        for i in range(n):
            region = REGIONS[regions[i]]
            started = starts[i]
            duration = timedelta(minutes=durations[i])
            if started + duration > now:
                # History is resolved by definition: outages that would still be running move
                # back in time. Active outages are added explicitly below.
                started = now - duration - timedelta(minutes=float(rng.uniform(10, 360)))
            started = started.replace(microsecond=0)
            drafts.append(
                _Draft(
                    service=services[i],
                    cause=model.cause,
                    region=region,
                    started_at=started,
                    resolved_at=started + timedelta(seconds=round(duration.total_seconds())),
                    customers=int(customers[i]),
                    prefixes=_areas_for(rng, region, int(customers[i])),
                    description=model.description,
                )
            )

    _reopen_long_running(rng, drafts, now)

    for spec in FIXED_ACTIVE:
        drafts.append(
            _Draft(
                service=spec.service,
                cause=spec.cause,
                region=Region(spec.region_name, spec.country, spec.prefixes, 0.0),
                started_at=now - timedelta(minutes=spec.minutes_ago),
                resolved_at=None,
                customers=spec.customers,
                prefixes=spec.prefixes,
                description=spec.description,
            )
        )

    drafts.sort(key=lambda d: d.started_at)
    counters: dict[int, int] = {}
    outages: list[DemoOutage] = []
    for d in drafts:
        year = d.started_at.astimezone(LOCAL_TZ).year
        counters[year] = counters.get(year, 0) + 1
        outages.append(
            DemoOutage(
                reference=f"STO-{year % 100:02d}-{counters[year]:05d}",
                service=d.service,
                cause=d.cause,
                region_name=d.region.name,
                country=d.region.country,
                started_at=d.started_at,
                resolved_at=d.resolved_at,
                customers_affected=d.customers,
                prefixes=d.prefixes,
                description=d.description,
                long_running=d.long_running,
            )
        )
    return outages


def _reopen_long_running(rng: np.random.Generator, drafts: list[_Draft], now: datetime) -> None:
    """Leave two or three recent history outages open well past their cause's p80 duration."""
    fixed_keys = {(spec.service, p) for spec in FIXED_ACTIVE for p in spec.prefixes}
    typical = {
        model.cause: _quantile_minutes([d.minutes for d in drafts if d.cause == model.cause], 0.8)
        for model in CAUSE_MODELS
    }
    window_start, window_end = now - timedelta(hours=96), now - timedelta(hours=20)
    candidates = [
        index
        for index, d in enumerate(drafts)
        if d.cause in LONG_RUNNING_CAUSES
        and window_start <= d.started_at <= window_end
        and (now - d.started_at).total_seconds() / 60.0 > typical[d.cause]
        # Keep the fixed demo outages the only ones for their service and area.
        and not any((d.service, p) in fixed_keys for p in d.prefixes)
    ]
    chosen = rng.choice(len(candidates), size=min(3, len(candidates)), replace=False).tolist()
    for pick in chosen:
        draft = drafts[candidates[pick]]
        draft.resolved_at = None
        draft.long_running = True
        draft.description = f"{draft.description} Het herstel duurt langer dan gebruikelijk."
    if len(chosen) >= 2:
        return
    # Rare with the default rates, but the guarantee holds for every seed.
    region = next(r for r in REGIONS if r.name == "Eindhoven")
    for hours_ago in (30, 52)[len(chosen) :]:
        drafts.append(
            _Draft(
                service="internet",
                cause="fiber_cut",
                region=region,
                started_at=now - timedelta(hours=hours_ago),
                resolved_at=None,
                customers=900,
                prefixes=_areas_for(rng, region, 900),
                description="Glasvezelkabel zwaar beschadigd. "
                "Het herstel duurt langer dan gebruikelijk.",
                long_running=True,
            )
        )


def duration_stats(outages: Sequence[DemoOutage]) -> dict[str, tuple[int, float, float, float]]:
    """Per cause: (count, median, p80, p95) of resolved durations in minutes."""
    by_cause: dict[str, list[float]] = {}
    for outage in outages:
        if outage.resolved_at is not None:
            minutes = (outage.resolved_at - outage.started_at).total_seconds() / 60.0
            by_cause.setdefault(outage.cause, []).append(minutes)
    return {
        cause: (
            len(values),
            _quantile_minutes(values, 0.5),
            _quantile_minutes(values, 0.8),
            _quantile_minutes(values, 0.95),
        )
        for cause, values in sorted(by_cause.items())
    }


def is_seeded(session: Session) -> bool:
    """True when the database already holds outages (demo or real)."""
    return bool(session.scalar(select(exists().where(Outage.id.is_not(None)))))


def seed_demo(
    session: Session,
    *,
    now: datetime,
    seed: int = 7,
    promise_history: bool = False,
    settings: Settings | None = None,
) -> SeedReport:
    """Store Lumen's demo outages (two years of history plus active ones) in ``session``.

    With ``promise_history`` also the promises customers were given in the last
    :data:`PROMISE_HISTORY_WEEKS` weeks, made by the promise engine on the history known then
    and scored against the actual resolution, with their follow-up messages
    (:func:`seed_promise_history`; ``settings`` configures the engine, default: the process's
    settings). ``belofte demo seed`` and ``belofte run`` ask for it; tests that only need
    outages leave it out (it fits the engine about ten times).

    Uses bulk inserts and flushes but does not commit: the caller owns the transaction. Refuses
    to run on a database that already has outages (check :func:`is_seeded` first).
    """
    if is_seeded(session):
        raise RuntimeError("the database already contains outages; not seeding demo data")
    outages = generate_demo_outages(now, seed)
    rows = [
        {
            "reference": o.reference,
            "service": o.service,
            "cause": o.cause,
            "region_name": o.region_name,
            "country": o.country,
            "started_at": o.started_at,
            "resolved_at": o.resolved_at,
            "customers_affected": o.customers_affected,
            "description": o.description,
        }
        for o in outages
    ]
    # Core executemany on the session's connection: no ORM bookkeeping for ~10,000 rows, and
    # RETURNING (sorted by parameter order) maps the generated ids back to the areas.
    connection = session.connection()
    ids = (
        connection.execute(insert(Outage).returning(Outage.id, sort_by_parameter_order=True), rows)
        .scalars()
        .all()
    )
    area_rows = [
        {"outage_id": outage_id, "country": o.country, "postcode_prefix": prefix}
        for outage_id, o in zip(ids, outages, strict=True)
        for prefix in o.prefixes
    ]
    connection.execute(insert(OutageArea), area_rows)
    session.flush()
    causes: dict[str, int] = {}
    for o in outages:
        causes[o.cause] = causes.get(o.cause, 0) + 1
    promises = (
        seed_promise_history(
            session,
            dict(zip(ids, outages, strict=True)),
            now=_as_utc(now),
            seed=seed,
            settings=settings or get_settings(),
        )
        if promise_history
        else None
    )
    return SeedReport(
        seed=seed,
        now=_as_utc(now),
        outages=len(outages),
        resolved=sum(1 for o in outages if o.resolved_at is not None),
        areas=len(area_rows),
        active=tuple(o.reference for o in outages if o.resolved_at is None),
        long_running=tuple(o.reference for o in outages if o.long_running),
        first_started_at=outages[0].started_at,
        causes=dict(sorted(causes.items())),
        promises=promises,
    )


# -- promise history (issue 6: what the supervisors' calibration shows) ---------------------------

#: How far back the demo's promise history goes (the supervisors' page shows 8 weeks by default).
PROMISE_HISTORY_WEEKS: Final = 10
#: When customers ask about an outage, in minutes after it started: on opening, after an hour,
#: after four hours (the moments of ``belofte promise backtest``).
_ASK_MINUTES: Final = (5.0, 60.0, 240.0)
#: The engine is refitted this often on the history known then, like the service's daily refit
#: but cheaper; a promise uses the newest fit made before it.
_REFIT: Final = timedelta(days=7)
#: Channels customers asked on, with weights; those in _SUBSCRIBE_CHANNELS can ask for updates.
_ASK_CHANNELS: Final = {"web": 0.30, "voice": 0.20, "telegram": 0.2, "sms": 0.15, "whatsapp": 0.15}
_SUBSCRIBE_CHANNELS: Final = frozenset({"telegram", "sms", "whatsapp"})
#: Share of customers on a messaging channel who ask to be told when it is fixed.
_SUBSCRIBE_SHARE: Final = 0.5
#: Share of follow-up messages the demo's channels gave up on (dead letters), and why.
_DEAD_SHARE: Final = 0.04
_DEAD_ERRORS: Final = {
    "telegram": "403 Forbidden: bot was blocked by the user",
    "sms": "Twilio 21610: attempt to send to unsubscribed recipient",
    "whatsapp": "Twilio 63016: outside the allowed window, template required",
}
#: Renewals of one customer's promise at most (each one an apology with a new time).
_MAX_RENEWALS: Final = 4


@dataclass(frozen=True, slots=True)
class PromiseHistoryReport:
    """What :func:`seed_promise_history` stored."""

    since: datetime
    decisions: int
    given: int
    kept: int
    broken: int
    no_deadline: int
    subscriptions: int
    messages: int
    dead_messages: int


def _demo_incident(outage: DemoOutage) -> Incident:
    # The same facts the service hands the engine for a stored outage (no extra attributes).
    return incident_of(outage)


@dataclass(slots=True)
class _Asked:
    """A customer told a promise (before it is stored)."""

    channel: str
    recipient: str
    language: str
    subscription: Subscription | None = None


def seed_promise_history(
    session: Session,
    outages: Mapping[int, DemoOutage],
    *,
    now: datetime,
    seed: int,
    settings: Settings,
) -> PromiseHistoryReport:
    """Promises given about the outages resolved in the last weeks, as the service would have.

    Customers ask about an outage on opening, after 1 h and after 4 h while it is open (more
    customers for bigger outages). Each time the engine, fitted on the history known a few days
    earlier at most, makes the promise at the supervisors' default target; it is stored as a
    decision and as given to each of those customers, and scored ``kept``/``broken`` (or
    ``no_deadline``) against the real resolution with the service's own :func:`score`. Nothing
    here sets a kept rate: it is whatever the engine achieves on the demo history.

    Half of the customers on a messaging channel subscribe to updates. As in
    :meth:`PromiseService.renew_due`, when 90 % (``promise_renew_at_fraction``) of a promise's
    time has passed with the outage still open, they are given a new promise (an apology,
    ``promise_renewed``, or ``promise_next_update``) and when it is fixed an ``outage_fixed``
    message; those messages are sent, a few are dead letters with their channel's error.
    """
    rng = np.random.default_rng(seed + 6)
    since = now - timedelta(weeks=PROMISE_HISTORY_WEEKS)
    config = engine_config(settings)
    target = settings.promise_default_target
    fraction = settings.promise_renew_at_fraction
    incidents = [_demo_incident(o) for o in outages.values()]
    recent = sorted(
        (
            (outage_id, o)
            for outage_id, o in outages.items()
            if o.resolved_at is not None and since <= o.started_at and o.resolved_at < now
        ),
        key=lambda item: (item[1].started_at, item[0]),
    )
    fits: list[tuple[datetime, PromiseEngine]] = []
    moment = since
    while moment < now:
        fits.append((moment, PromiseEngine(config).fit(incidents, moment)))
        moment += _REFIT

    def promise_at(incident: Incident, at: datetime) -> Estimate:
        engine = next(engine for fitted, engine in reversed(fits) if fitted <= at)
        return engine.promise(incident, at, target)

    channels = list(_ASK_CHANNELS)
    weights = np.array([_ASK_CHANNELS[c] for c in channels])
    counter = 0
    decisions: list[Promise] = []
    givens: list[tuple[PromiseGiven, _Asked]] = []
    #: Index in ``givens`` of a renewed promise -> index of the promise that replaced it.
    renewed_by: dict[int, int] = {}
    subscriptions: list[Subscription] = []
    for outage_id, outage in recent:
        incident = _demo_incident(outage)
        resolved_at = outage.resolved_at
        assert resolved_at is not None
        #: (when, index in givens, who, how many renewals so far), earliest first.
        renewals: list[tuple[datetime, int, _Asked, int]] = []
        for minutes in _ASK_MINUTES:
            asked_at = outage.started_at + timedelta(minutes=minutes)
            if asked_at >= resolved_at:
                break
            crowd = 1 + int(rng.poisson(min(outage.customers_affected / 500.0, 6.0)))
            people: list[_Asked] = []
            for pick in rng.choice(len(channels), size=crowd, p=weights / weights.sum()).tolist():
                counter += 1
                channel = channels[pick]
                asked = _Asked(channel, f"demo-{channel}-{counter:05d}", "nl")
                if rng.random() < 0.2:
                    asked.language = "en"
                if channel in _SUBSCRIBE_CHANNELS and rng.random() < _SUBSCRIBE_SHARE:
                    asked.subscription = Subscription(
                        outage_id=outage_id,
                        channel=channel,
                        address=asked.recipient,
                        language=asked.language,
                        service=outage.service,
                        created_at=asked_at,
                    )
                    subscriptions.append(asked.subscription)
                people.append(asked)
            estimate = promise_at(incident, asked_at)
            decision = _decision(outage_id, estimate)
            decisions.append(decision)
            for asked in people:
                given = _given(outage_id, decision, estimate, asked, asked_at, resolved_at)
                givens.append((given, asked))
                due = _renew_moment(estimate, fraction)
                if asked.subscription is not None and due is not None and due < resolved_at:
                    heapq.heappush(renewals, (due, len(givens) - 1, asked, 0))
        # Renewals: each subscriber whose promise is about to break hears a new one.
        while renewals:
            due, index, asked, rounds = heapq.heappop(renewals)
            old, _ = givens[index]
            old.renewed_at = due
            estimate = promise_at(incident, due)
            decision = _decision(outage_id, estimate)
            decisions.append(decision)
            given = _given(outage_id, decision, estimate, asked, due, resolved_at)
            givens.append((given, asked))
            renewed_by[index] = len(givens) - 1
            next_due = _renew_moment(estimate, fraction)
            if next_due is not None and next_due < resolved_at and rounds + 1 < _MAX_RENEWALS:
                heapq.heappush(renewals, (next_due, len(givens) - 1, asked, rounds + 1))
    session.add_all(decisions)
    session.add_all(subscriptions)
    session.add_all(given for given, _ in givens)
    session.flush()

    messages: list[OutboxMessage] = []
    for old_index, new_index in renewed_by.items():
        given, asked = givens[old_index]
        renewed = givens[new_index][0]
        subscription = asked.subscription
        assert subscription is not None and given.renewed_at is not None  # only they renew
        # The apology announces the promise this subscriber was given next.
        messages.append(
            _message(
                rng,
                kind="promise_renewed",
                template="promise_renewed" if given.deadline else "promise_next_update",
                given=given,
                subscription=subscription,
                at=given.renewed_at,
                params={
                    "outage": outages[given.outage_id].reference,
                    "service": outages[given.outage_id].service,
                    "old_deadline": _iso(given.deadline),
                    "old_next_update_at": _iso(given.next_update_at),
                    "new_deadline": _iso(renewed.deadline),
                    "new_next_update_at": _iso(renewed.next_update_at),
                },
                dedupe_key=f"renewed:{given.outage_id}:{renewed.promise_id}:"
                f"{subscription.channel}:{subscription.address}",
                promise_given_id=renewed.id,
            )
        )
    for subscription in subscriptions:
        outage = outages[subscription.outage_id or 0]
        assert outage.resolved_at is not None
        messages.append(
            _message(
                rng,
                kind="outage_fixed",
                template="outage_fixed",
                given=None,
                subscription=subscription,
                at=outage.resolved_at,
                params={
                    "outage": outage.reference,
                    "service": outage.service,
                    "region": outage.region_name,
                    "started_at": _iso(outage.started_at),
                    "resolved_at": _iso(outage.resolved_at),
                },
                dedupe_key=f"fixed:{subscription.outage_id}:{subscription.id}",
                promise_given_id=None,
            )
        )
        if messages[-1].status == "sent":
            subscription.notified_at = outage.resolved_at
    session.add_all(messages)
    session.flush()
    outcomes = [given.outcome for given, _ in givens]
    return PromiseHistoryReport(
        since=since,
        decisions=len(decisions),
        given=len(givens),
        kept=outcomes.count("kept"),
        broken=outcomes.count("broken"),
        no_deadline=outcomes.count("no_deadline"),
        subscriptions=len(subscriptions),
        messages=len(messages),
        dead_messages=sum(1 for m in messages if m.status == "dead"),
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _renew_moment(estimate: Estimate, fraction: float) -> datetime | None:
    end = estimate.deadline if estimate.deadline is not None else estimate.next_update_at
    if end is None:
        return None
    return estimate.made_at + (end - estimate.made_at) * fraction


def _decision(outage_id: int, estimate: Estimate) -> Promise:
    # The outage is resolved: every decision about it has been superseded or has lapsed.
    return Promise(
        outage_id=outage_id,
        deadline=None if estimate.deadline is None else estimate.deadline.astimezone(UTC),
        next_update_at=(
            None if estimate.next_update_at is None else estimate.next_update_at.astimezone(UTC)
        ),
        target_quantile=estimate.target,
        status="superseded",
        evidence=estimate.to_dict(),
        made_at=estimate.made_at,
        made_by="engine",
    )


def _given(
    outage_id: int,
    decision: Promise,
    estimate: Estimate,
    asked: _Asked,
    at: datetime,
    resolved_at: datetime,
) -> PromiseGiven:
    explanation = estimate.explanation
    return PromiseGiven(
        promise=decision,
        outage_id=outage_id,
        given_at=at,
        channel=asked.channel,
        recipient=asked.recipient,
        language=asked.language,
        deadline=decision.deadline,
        next_update_at=decision.next_update_at,
        target_quantile=estimate.target,
        evidence={
            "n": explanation.similar,
            "segment": explanation.segment,
            "fixed_within": explanation.fixed_within,
            "method_version": explanation.method_version,
            "status": "suggested",
        },
        outcome=score(decision.deadline, resolved_at),
        scored_at=resolved_at,
    )


def _message(
    rng: np.random.Generator,
    *,
    kind: str,
    template: str,
    given: PromiseGiven | None,
    subscription: Subscription,
    at: datetime,
    params: Mapping[str, str | None],
    dedupe_key: str,
    promise_given_id: int | None,
) -> OutboxMessage:
    dead = bool(rng.random() < _DEAD_SHARE)
    attempts = 8 if dead else 1
    last_attempt = at + timedelta(minutes=30 if dead else 0, seconds=4)
    return OutboxMessage(
        kind=kind,
        outage_id=subscription.outage_id,
        subscription_id=subscription.id,
        promise_given_id=promise_given_id,
        channel=subscription.channel,
        address=subscription.address,
        language=subscription.language,
        payload={"template": template, "params": dict(params)},
        dedupe_key=dedupe_key,
        status="dead" if dead else "sent",
        attempts=attempts,
        next_attempt_at=last_attempt,
        created_at=at,
        sent_at=None if dead else last_attempt,
        last_error=_DEAD_ERRORS[subscription.channel] if dead else None,
        last_attempt_at=last_attempt,
    )
