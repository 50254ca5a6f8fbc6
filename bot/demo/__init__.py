"""Demo data: the fictional provider Lumen with two years of outage history."""

from bot.demo.seed import SeedReport, generate_demo_outages, is_seeded, seed_demo

__all__ = ["SeedReport", "generate_demo_outages", "is_seeded", "seed_demo"]
