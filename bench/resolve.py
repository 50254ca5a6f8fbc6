"""How long resolving an outage takes with many subscribers (``PromiseService.resolve``).

Example (the figures in docs/benchmarks.md)::

    .venv/bin/python bench/resolve.py --subscribers 10000 50000 --json var/bench-resolve.json

Every size gets a fresh PostgreSQL database on 127.0.0.1:5432 (``BELOFTE_BENCH_POSTGRES_URL``,
dropped afterwards unless ``--keep``) with one outage and N active subscriptions made to look
like real ones, so every lookup resolve makes is exercised:

- 60 % SMS subscribers known as customers (the shared phone identity and an SMS identity),
  20 % Telegram chats, 10 % WhatsApp numbers, 10 % SMS numbers nobody knows (no customer);
- 1 in 20 is a Telegram chat tied to a number whose customer chose SMS (rerouted), a third of
  those opted out of SMS (so they stay on Telegram);
- 1 in 50 customers subscribed twice (Telegram and SMS) and chose Telegram: one message;
- 1 in 100 subscriptions cancelled (nothing queued), plus one promise given per subscriber
  (kept, broken or without a clock time) to score.

With ``--renew`` the promise, due for renewal, is renewed twice first (timed the same way; the
digest then includes the renewal messages). The same resolve is then run a second time
(nothing may be queued twice). The bench prints the
seconds of both, the counts, and a digest of the outbox rows (channel, address, subscription,
language, payload), so two versions of the code can be checked to queue exactly the same rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import make_url

from bot.promises.service import PromiseService
from bot.settings import Settings
from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.migrate import upgrade_database
from bot.storage.models import (
    ChannelIdentity,
    ChannelOptOut,
    Customer,
    Outage,
    OutboxMessage,
    Promise,
    PromiseGiven,
    Subscription,
)

ADMIN_URL = os.environ.get(
    "BELOFTE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def say(message: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _admin() -> str:
    return make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(False)


def create_database() -> tuple[str, str]:
    """A fresh, migrated database; (its URL, its name)."""
    name = f"belofte_resolve_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    return url, name


def drop_database(name: str) -> None:
    """Drop the bench database."""
    with psycopg.connect(_admin(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def populate(engine: Engine, count: int) -> int:
    """The outage, its ``count`` subscriptions, their customers and promises given; its id."""
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        outage = Outage(
            reference="STO-BENCH-RESOLVE",
            service="internet",
            cause="fiber_cut",
            region_name="Utrecht",
            country="NL",
            started_at=NOW - timedelta(hours=3),
            customers_affected=count,
        )
        session.add(outage)
        session.flush()
        promise = Promise(
            outage_id=outage.id,
            deadline=NOW - timedelta(minutes=30),
            target_quantile=0.8,
            status="suggested",
            evidence={},
            made_at=NOW - timedelta(hours=2),
            made_by="engine",
        )
        session.add(promise)
        session.flush()
        outage_id, promise_id = outage.id, promise.id

        customers: list[dict[str, Any]] = []  # one per known subscriber, in order
        plans: list[tuple[int, str, str, str | None]] = []  # (i, channel, native, preferred)
        for i in range(count):
            number = f"+316{10_000_000 + i:08d}"
            chat = str(5_000_000_000 + i)
            kind = i % 10
            if kind == 9:
                continue  # an SMS number nobody knows
            channel, native = (
                ("sms", number) if kind < 6 else ("telegram", chat) if kind < 8 else
                ("whatsapp", number)
            )  # fmt: skip
            preferred = None
            if i % 20 == 6:
                preferred = "sms"  # a Telegram chat tied to a number, SMS chosen
            elif i % 50 == 7:
                preferred = "telegram"  # subscribed on Telegram and SMS, Telegram chosen
            plans.append((i, channel, native, preferred))
            customers.append({"language": "nl", "preferred_channel": preferred, "created_at": NOW})
        ids = session.scalars(
            insert(Customer).returning(Customer.id, sort_by_parameter_order=True), customers
        ).all()

        identities: list[dict[str, Any]] = []
        opt_outs: list[dict[str, Any]] = []
        subscriptions: list[dict[str, Any]] = []
        given: list[dict[str, Any]] = []
        known = dict(zip((plan[0] for plan in plans), zip(ids, plans, strict=True), strict=True))

        def identity(customer_id: int, channel: str, external: str) -> None:
            identities.append(
                {"customer_id": customer_id, "channel": channel, "external_id": external,
                 "created_at": NOW}
            )  # fmt: skip

        for i in range(count):
            number = f"+316{10_000_000 + i:08d}"
            chat = str(5_000_000_000 + i)
            found = known.get(i)
            channel, native = ("sms", number) if found is None else found[1][1:3]
            if found is not None:
                customer_id, (_, _, _, preferred) = found
                if channel in ("sms", "whatsapp"):
                    identity(customer_id, "phone", number)
                identity(customer_id, channel, native)
                if preferred is not None and channel == "telegram":
                    identity(customer_id, "phone", number)  # tied by a shared contact
                    if i % 60 == 6:
                        opt_outs.append(
                            {"channel": "sms", "address": number, "opted_out_at": NOW,
                             "updated_at": NOW}
                        )  # fmt: skip
                if preferred == "telegram":
                    subscriptions.append(_subscription(outage_id, i, "sms", number))
            subscriptions.append(_subscription(outage_id, i, channel, native))
            given.append(
                {
                    "promise_id": promise_id,
                    "outage_id": outage_id,
                    "given_at": NOW - timedelta(hours=2),
                    "channel": channel,
                    "recipient": f"{channel}:{native}",
                    "language": "nl",
                    # Kept, broken, or only a next update.
                    "deadline": [NOW + timedelta(hours=1), NOW - timedelta(hours=1), None][i % 3],
                    "next_update_at": None if i % 3 < 2 else NOW - timedelta(hours=1),
                    "target_quantile": 0.8,
                    "evidence": {},
                }
            )
        for model, rows in (
            (ChannelIdentity, identities),
            (ChannelOptOut, opt_outs),
            (Subscription, subscriptions),
            (PromiseGiven, given),
        ):
            if rows:
                session.execute(insert(model), rows)
    return outage_id


def _subscription(outage_id: int, i: int, channel: str, native: str) -> dict[str, Any]:
    return {
        "outage_id": outage_id,
        "channel": channel,
        "address": f"{channel}:{native}",
        "language": "nl" if i % 2 == 0 else "en",
        "created_at": NOW - timedelta(hours=2),
        "cancelled_at": NOW - timedelta(hours=1) if i % 100 == 1 else None,
    }


def digest(engine: Engine, outage_id: int) -> tuple[int, str]:
    """(rows, SHA-256 of the outbox rows of the outage in subscription and key order)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                OutboxMessage.subscription_id,
                OutboxMessage.channel,
                OutboxMessage.address,
                OutboxMessage.language,
                OutboxMessage.payload,
                OutboxMessage.dedupe_key,
            )
            .where(OutboxMessage.outage_id == outage_id)
            # A subscription can have two rows (renewed, then fixed): the key breaks the tie.
            .order_by(OutboxMessage.subscription_id, OutboxMessage.dedupe_key)
        ).all()
    text = json.dumps([list(row) for row in rows], sort_keys=True)
    return len(rows), hashlib.sha256(text.encode()).hexdigest()


def renew(engine: Engine, service: PromiseService) -> dict[str, Any]:
    """Renew the outage's promise (due: 90 % of its time has passed) twice; seconds and counts.

    With one outage of history the engine has too little evidence for a clock time, so the new
    promise is a next-update time: every subscriber told the old promise gets a message.
    """
    sessions = make_sessionmaker(engine)
    now = NOW - timedelta(minutes=35)  # promise made NOW - 2 h, deadline NOW - 30 min
    timings, queued = [], []
    for attempt in (1, 2):
        tick = time.perf_counter()
        with sessions() as session, session.begin():
            queued.append(service.renew_due(session, now))
        timings.append(time.perf_counter() - tick)
        say(f"  renew {attempt}: {timings[-1]:.2f} s, {queued[-1]} queued")
    return {
        "renew_seconds": round(timings[0], 2),
        "second_renew_seconds": round(timings[1], 2),
        "renew_queued": queued[0],
        "renew_queued_second_time": queued[1],
    }


def run(count: int, keep: bool, with_renewal: bool = False) -> dict[str, Any]:
    """Populate a fresh database with ``count`` subscribers and resolve twice (with
    ``with_renewal``, renew the promise twice first)."""
    url, name = create_database()
    engine = make_engine(url)
    try:
        tick = time.perf_counter()
        outage_id = populate(engine, count)
        say(f"{count} subscribers inserted in {time.perf_counter() - tick:.1f} s")
        sessions = make_sessionmaker(engine)
        service = PromiseService(Settings(_env_file=None, database_url=url))
        renewal = renew(engine, service) if with_renewal else {}
        timings = []
        summaries = []
        for attempt in (1, 2):
            tick = time.perf_counter()
            with sessions() as session, session.begin():
                summaries.append(service.resolve(session, outage_id, NOW, NOW))
            timings.append(time.perf_counter() - tick)
            say(f"  resolve {attempt}: {timings[-1]:.2f} s, {summaries[-1]}")
        rows, sha = digest(engine, outage_id)
        with engine.connect() as connection:
            active = connection.execute(
                select(func.count()).where(
                    Subscription.outage_id == outage_id, Subscription.cancelled_at.is_(None)
                )
            ).scalar_one()
        first, second = summaries
        return {
            "subscribers": count,
            "active_subscriptions": active,
            "resolve_seconds": round(timings[0], 2),
            "second_resolve_seconds": round(timings[1], 2),
            "queued": first.queued,
            "queued_second_time": second.queued,
            "scored": {
                "kept": first.kept,
                "broken": first.broken,
                "no_deadline": first.no_deadline,
            },
            "outbox_rows": rows,
            "outbox_sha256": sha,
            **renewal,
        }
    finally:
        engine.dispose()
        if not keep:
            drop_database(name)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--renew", action="store_true", help="renew the promise (twice) before resolving"
    )
    args = parser.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "command": " ".join(sys.argv),
        "runs": [run(count, args.keep, args.renew) for count in args.subscribers],
    }
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text_out + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
