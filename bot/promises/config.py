"""The promise engine's configuration, read from the one settings object."""

from __future__ import annotations

from bot.settings import Settings
from promise.engine import EngineConfig


def engine_config(settings: Settings) -> EngineConfig:
    """The :class:`~promise.engine.EngineConfig` the settings describe."""
    return EngineConfig(
        min_evidence=settings.promise_min_evidence,
        half_life_days=settings.promise_half_life_days,
        calibration_days=settings.promise_calibration_days,
        next_update_minutes=settings.promise_next_update_minutes,
        timezone=settings.timezone,
        estimator=settings.promise_estimator,
        segments=tuple(
            tuple(name.strip() for name in segment.split(",") if name.strip())
            for segment in settings.promise_segments
        ),
    )
