"""Fan-out of one outage's "fixed" message to many subscribers, and what a killed worker costs.

Example (the figures in docs/benchmarks.md)::

    .venv/bin/python bench/fanout.py --subscribers 50000 --json var/bench-fanout.json

Every run makes a fresh PostgreSQL database on 127.0.0.1:5432 (dropped afterwards unless
``--keep``), bulk-inserts N subscribers of one outage, resolves it through the real
``PromiseService.resolve`` (N "fixed" rows in the outbox) and lets ``belofte worker`` processes
(arq on Redis database 14, a queue of its own) deliver them through the real twilio client to
Stoplight Prism serving Twilio's OpenAPI description (``tools/prism``, as the tests start it). A
small recording proxy sits between the workers and Prism and counts, per recipient, every
message Prism created (answered 201) through it: what the "API" really got, including requests
whose worker was killed before the answer came back.

Runs (``--runs``, each on its own outage and phone numbers):

- ``throughput``: the workers deliver everything; messages per second.
- ``sigkill``: a worker is killed with SIGKILL when half the messages are sent and started
  again at once. arq runs the killed worker's jobs again once their in-progress marker expires
  (job timeout + 10 s); the claims they left are settled by looking the message up at "Twilio".
  Prism keeps nothing (its list answers are generated), so the lookup finds nothing and a
  message whose request reached Prism before the kill is sent again: those are the duplicates.
- ``sigkill-lookup``: the same, but the proxy answers the message list from what it recorded,
  as Twilio itself would: the lookup then finds the messages and nothing is sent twice.
- ``sigterm``: the worker gets SIGTERM (graceful: it stops taking jobs and lets running ones
  finish) and is started again.

For each run: zero losses means every outbox row ended ``sent`` and every subscriber has exactly
one message accepted by the API in our records (``channel_outbound`` with a Twilio SID); the
proxy's counts give the duplicates (a recipient whose message was created more than once) and
any recipient the API never saw. The rate limit is off (``delivery_rate_limits={}``): this
measures what the pipeline can do, not a carrier's pace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import psycopg
from aiohttp import web
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from bot.promises.service import PromiseService
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.migrate import upgrade_database
from bot.storage.models import ChannelOutbound, Outage, OutboxMessage

ADMIN_URL = os.environ.get(
    "BELOFTE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BELOFTE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PRISM_DIR = PROJECT_ROOT / "tools" / "prism"
TWILIO_SPEC = PROJECT_ROOT.parent / "shared" / "specs" / "twilio" / "twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SENDER = "+3197010000001"


def say(message: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the recording proxy -------------------------------------------------------------------------


@dataclass
class Created:
    """One message creation that reached the proxy."""

    to: str
    sender: str
    body: str
    received: float
    status: int | None = None
    sid: str | None = None


@dataclass
class RecordingProxy:
    """Forwards to Prism and records every message creation, per recipient.

    ``lookup``: answer the message list from the record (as Twilio would) instead of Prism's
    generated pages.
    """

    upstream: str
    lookup: bool = False
    created: list[Created] = field(default_factory=list)
    lookups: int = 0
    upstream_errors: int = 0
    #: Creations received and not yet answered by Prism.
    in_flight: int = 0
    session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward ``request`` to Prism, recording message creations and lookups."""
        body = await request.read()
        is_messages = request.path.endswith("/Messages.json")
        record: Created | None = None
        if is_messages and request.method == "POST":
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            record = Created(
                form.get("To", ""), form.get("From", ""), form.get("Body", ""), time.time()
            )
            self.created.append(record)
            self.in_flight += 1
        elif is_messages and request.method == "GET":
            self.lookups += 1
            if self.lookup:
                return self._page(request)
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        try:
            async with self.session.request(
                request.method,
                self.upstream + str(request.rel_url),
                data=body or None,
                headers=headers,
            ) as answer:
                content = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Prism dropped the connection (it does, rarely, under load): nothing was created.
            # Answer as a gateway would, so the client retries.
            self.upstream_errors += 1
            error = {"code": 20502, "message": f"upstream: {exc}", "status": 502}
            status, content = 502, json.dumps(error).encode()
        if record is not None:
            self.in_flight -= 1
            record.status = status
            with contextlib.suppress(ValueError, AttributeError):
                record.sid = json.loads(content).get("sid")
        return web.Response(status=status, body=content, content_type="application/json")

    def _page(self, request: web.Request) -> web.Response:
        to, sender = request.query.get("To"), request.query.get("From")
        size = int(request.query.get("PageSize", "50"))
        found = [
            c
            for c in reversed(self.created)
            if c.sid and (to is None or c.to == to) and (sender is None or c.sender == sender)
        ][:size]
        messages = [
            {
                "sid": c.sid,
                "account_sid": ACCOUNT_SID,
                "to": c.to,
                "from": c.sender,
                "body": c.body,
                "status": "queued",
                "date_created": format_datetime(datetime.fromtimestamp(c.received, UTC), True),
            }
            for c in found
        ]
        page = {"messages": messages, "next_page_uri": None, "page": 0, "page_size": size}
        return web.json_response(page)

    def per_recipient(self) -> Counter[str]:
        """How many messages the API created per recipient (answered 201)."""
        return Counter(c.to for c in self.created if c.status == 201)


_FORWARDED = {"authorization", "content-type", "accept", "user-agent"}


# -- processes -----------------------------------------------------------------------------------


def start_prism(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Prism on a free port with generated answers, as the tests start it (less logging)."""
    node = shutil.which("node")
    entry = (PRISM_DIR / "node_modules" / ".bin" / "prism").resolve()
    if node is None or not entry.exists():
        raise SystemExit("Prism is not installed: run `make prism` (needs node and npm)")
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [node, str(entry), "mock", "-d", "-v", "error", "-h", "127.0.0.1", "-p", str(port),
             str(TWILIO_SPEC)],
            stdout=out, stderr=subprocess.STDOUT, cwd=PRISM_DIR,
        )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


async def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``url`` answers at all (Prism logs nothing at ``-v error``)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"Prism exited with {process.returncode}")
            try:
                async with session.get(url + "/"):
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise SystemExit("Prism did not start in time") from None
                await asyncio.sleep(0.3)


@dataclass
class Workers:
    """``python -m bot.delivery`` processes with the bench's environment."""

    env: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    def start(self) -> subprocess.Popen[bytes]:
        """Start one more worker."""
        self.started += 1
        log = (self.logs / f"worker-{self.started}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.delivery"],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """SIGTERM every worker still running, SIGKILL after 30 s."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


# -- database ------------------------------------------------------------------------------------


def create_database(keep: bool) -> tuple[str, str]:
    """A fresh, migrated database; (its URL, its name)."""
    name = f"belofte_fanout_{uuid.uuid4().hex[:10]}"
    admin = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    return url, name


def drop_database(name: str) -> None:
    """Drop the bench database."""
    admin = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_outage(settings: Settings, engine: Engine, run: int, count: int) -> dict[str, float]:
    """One outage with ``count`` subscribers (bulk insert), then resolved: ``count`` outbox rows.

    Phone numbers are ``+316`` and eight digits starting at ``run`` million, so every run has
    its own recipients.
    """
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    tick = time.perf_counter()
    with sessions() as session, session.begin():
        outage = Outage(
            reference=f"STO-BENCH-{run:02d}",
            service="internet",
            cause="fiber_cut",
            region_name="Utrecht",
            country="NL",
            started_at=now - timedelta(hours=3),
            customers_affected=count,
        )
        session.add(outage)
        session.flush()
        session.execute(
            text(
                "INSERT INTO subscriptions (outage_id, channel, address, language, service, "
                "created_at) SELECT :outage, 'sms', '+316' || lpad((:base + g)::text, 8, '0'), "
                "CASE WHEN g % 2 = 0 THEN 'nl' ELSE 'en' END, 'internet', :now "
                "FROM generate_series(1, :count) AS g"
            ),
            {"outage": outage.id, "base": run * 1_000_000, "count": count, "now": now},
        )
        outage_id = outage.id
    inserted = time.perf_counter() - tick
    tick = time.perf_counter()
    with sessions() as session, session.begin():
        summary = PromiseService(settings).resolve(session, outage_id, now, now)
    resolved = time.perf_counter() - tick
    if summary.queued != count:
        raise SystemExit(f"resolving queued {summary.queued} messages, expected {count}")
    return {"outage_id": outage_id, "insert_s": inserted, "resolve_s": resolved}


def progress(engine: Engine, outage_id: int) -> tuple[int, int]:
    """(sent, not yet sent and not dead) outbox rows of the outage."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.outage_id == outage_id)
            .group_by(OutboxMessage.status)
        ).all()
    counts: dict[str, int] = {status: n for status, n in rows}
    return counts.get("sent", 0), counts.get("pending", 0) + counts.get("failed", 0)


def verify(engine: Engine, outage_id: int, proxy: RecordingProxy) -> dict[str, Any]:
    """Losses and duplicates of one run, from our records and from what reached the API."""
    with engine.connect() as connection:
        statuses = dict(
            connection.execute(
                select(OutboxMessage.status, func.count())
                .where(OutboxMessage.outage_id == outage_id)
                .group_by(OutboxMessage.status)
            ).all()
        )
        accepted = connection.execute(
            select(ChannelOutbound.address, ChannelOutbound.twilio_sid, ChannelOutbound.attempts)
            .join(OutboxMessage, OutboxMessage.id == ChannelOutbound.outbox_id)
            .where(OutboxMessage.outage_id == outage_id)
        ).all()
        sent_span = connection.execute(
            select(func.min(OutboxMessage.sent_at), func.max(OutboxMessage.sent_at)).where(
                OutboxMessage.outage_id == outage_id
            )
        ).one()
        recipients = connection.execute(
            select(func.count()).where(OutboxMessage.outage_id == outage_id)
        ).scalar_one()
    ours = Counter(address for address, sid, _ in accepted if sid)
    at_api = proxy.per_recipient()
    addresses = {address for address, _, _ in accepted}
    our_sids = {sid for _, sid, _ in accepted if sid}
    api_sids = {c.sid for c in proxy.created if c.sid}
    return {
        "outbox": statuses,
        "recipients": recipients,
        "lost": recipients - statuses.get("sent", 0),
        "recipients_without_one_accepted_message": recipients
        - sum(1 for n in ours.values() if n == 1),
        "creations_at_api": sum(at_api.values()),
        "creation_requests_at_api": len(proxy.created),
        "upstream_errors": proxy.upstream_errors,
        "duplicates_at_api": sum(n - 1 for n in at_api.values() if n > 1),
        "recipients_with_duplicates": sum(1 for n in at_api.values() if n > 1),
        "recipients_never_at_api": len(addresses - set(at_api)),
        "created_but_answer_not_recorded": len(api_sids - our_sids),
        "retried_claims": sum(1 for _, _, attempts in accepted if attempts > 1),
        "lookups": proxy.lookups,
        "first_sent_at": sent_span[0].isoformat() if sent_span[0] else None,
        "last_sent_at": sent_span[1].isoformat() if sent_span[1] else None,
    }


# -- one run -------------------------------------------------------------------------------------


async def run_once(
    kind: str,
    run: int,
    args: argparse.Namespace,
    settings: Settings,
    engine: Engine,
    workers: Workers,
    proxy: RecordingProxy,
) -> dict[str, Any]:
    """Queue N messages, start the workers, kill/stop one half-way if asked, verify."""
    proxy.created.clear()
    proxy.lookups = 0
    proxy.upstream_errors = 0
    proxy.lookup = kind == "sigkill-lookup"
    say(f"run {run} ({kind}): {args.subscribers} subscribers")
    made = await asyncio.to_thread(make_outage, settings, engine, run, args.subscribers)
    outage_id = int(made["outage_id"])
    say(
        f"  inserted in {made['insert_s']:.1f} s, resolved (outbox rows queued) in "
        f"{made['resolve_s']:.1f} s"
    )
    started = time.perf_counter()
    victims = [workers.start() for _ in range(args.workers)]
    disrupted: dict[str, Any] = {}
    deadline = started + args.timeout
    while True:
        sent, waiting = await asyncio.to_thread(progress, engine, outage_id)
        if kind != "throughput" and not disrupted and sent >= args.subscribers // 2:
            victim = victims[0]
            # Strike while requests are on their way: the case that needs settling afterwards.
            for _ in range(2000):
                if proxy.in_flight > 0:
                    break
                await asyncio.sleep(0.005)
            in_flight = proxy.in_flight
            in_api = len(proxy.created)
            if kind == "sigterm":
                victim.send_signal(signal.SIGTERM)
                tick = time.perf_counter()
                await asyncio.to_thread(victim.wait, 120)
                stop_s = time.perf_counter() - tick
            else:
                victim.kill()
                await asyncio.to_thread(victim.wait, 30)
                stop_s = 0.0
            workers.start()
            disrupted = {
                "signal": "SIGTERM" if kind == "sigterm" else "SIGKILL",
                "sent_before": sent,
                "creation_requests_before": in_api,
                "requests_in_flight_at_the_signal": in_flight,
                "stop_seconds": round(stop_s, 2),
                "exit_code": victim.returncode,
            }
            say(f"  {disrupted['signal']} at {sent} sent; worker restarted")
        if waiting == 0:
            break
        if time.perf_counter() > deadline:
            say(f"  timeout: {waiting} messages still waiting")
            break
        await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - started
    workers.stop_all()
    result = await asyncio.to_thread(verify, engine, outage_id, proxy)
    first, last = result.pop("first_sent_at"), result.pop("last_sent_at")
    span = (
        (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
        if first and last
        else None
    )
    result.update(
        kind=kind,
        subscribers=args.subscribers,
        workers=args.workers,
        concurrency=args.concurrency,
        insert_seconds=round(made["insert_s"], 2),
        resolve_seconds=round(made["resolve_s"], 2),
        seconds_until_all_sent=round(elapsed, 1),
        send_span_seconds=round(span, 1) if span else None,
        messages_per_second=round(args.subscribers / span, 1) if span else None,
        disruption=disrupted or None,
    )
    say(
        f"  done in {elapsed:.1f} s: lost {result['lost']}, duplicates at the API "
        f"{result['duplicates_at_api']}, {result['messages_per_second']} msg/s"
    )
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Set up Prism, the proxy, the database; do the runs; tear everything down."""
    scratch = Path(tempfile.mkdtemp(prefix="belofte-fanout-"))
    prism, prism_url = start_prism(scratch / "prism.log")
    url, name = create_database(args.keep)
    queue = f"belofte-bench:{uuid.uuid4().hex[:8]}"
    proxy = RecordingProxy(prism_url)
    runner: web.AppRunner | None = None
    try:
        await wait_for_http(prism_url, prism, 120)
        proxy.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200), timeout=aiohttp.ClientTimeout(total=30)
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        proxy_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", proxy_port).start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BELOFTE_")},
            "BELOFTE_ENV_FILE": "/dev/null",
            "BELOFTE_HOME": str(scratch / "home"),
            "BELOFTE_DATABASE_URL": url,
            "BELOFTE_REDIS_URL": REDIS_URL,
            "BELOFTE_API_KEY": "bench",
            "BELOFTE_DELIVERY_QUEUE_NAME": queue,
            "BELOFTE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "BELOFTE_TWILIO_AUTH_TOKEN": "bench-auth-token",
            "BELOFTE_TWILIO_SMS_FROM": SENDER,
            "BELOFTE_TWILIO_API_BASE_URL": f"http://127.0.0.1:{proxy_port}",
            "BELOFTE_TWILIO_TIMEOUT_SECONDS": "5",
            "BELOFTE_DELIVERY_RATE_LIMITS": "{}",
            "BELOFTE_DELIVERY_CONCURRENCY": str(args.concurrency),
            "BELOFTE_DELIVERY_DISPATCH_INTERVAL_SECONDS": "1",
            "BELOFTE_DELIVERY_DISPATCH_BATCH": "2000",
            "BELOFTE_DELIVERY_JOB_TIMEOUT_SECONDS": str(args.job_timeout),
            "BELOFTE_DELIVERY_CLAIM_LEASE_SECONDS": "15",
            "BELOFTE_DELIVERY_SHUTDOWN_GRACE_SECONDS": "12",
        }
        settings = Settings(_env_file=None, database_url=url, home=scratch / "home")
        workers = Workers(env, scratch)
        engine = make_engine(url)
        results = []
        try:
            for run, kind in enumerate(args.runs, start=1):
                results.append(await run_once(kind, run, args, settings, engine, workers, proxy))
        finally:
            workers.stop_all()
            engine.dispose()
        return {
            "machine": {"cpus": os.cpu_count()},
            "command": " ".join(sys.argv),
            "logs": str(scratch),
            "runs": results,
        }
    finally:
        if runner is not None:
            await runner.cleanup()
        if proxy.session is not None:
            await proxy.session.close()
        prism.terminate()
        try:
            prism.wait(10)
        except subprocess.TimeoutExpired:
            prism.kill()
        if not args.keep:
            drop_database(name)
        await _clean_redis(queue)


async def _clean_redis(queue: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{queue}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


RUNS = ("throughput", "sigkill", "sigkill-lookup", "sigterm")


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=50_000)
    parser.add_argument(
        "--runs",
        type=lambda s: [r for r in s.split(",") if r],
        default=list(RUNS),
        help=f"comma-separated, of: {', '.join(RUNS)}",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes per run")
    parser.add_argument("--concurrency", type=int, default=32, help="jobs at once per worker")
    parser.add_argument("--job-timeout", type=int, default=20, help="seconds; arq re-runs a "
                        "killed worker's jobs this long (+10 s) after they started")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    unknown = set(args.runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    # Started in the background by a shell, SIGINT is ignored: make Ctrl-C and SIGTERM stop the
    # bench with its clean-up (workers, Prism, the database).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = asyncio.run(bench(args))
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text_out + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
