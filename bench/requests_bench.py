"""Privacy-request benchmarks: access and deletion latency, and throughput with 8 clients, for
people among 1,000,000 in the vault with rows in a connected shop database of 1,000,000 rows
per table.

    .venv/bin/python bench/requests_bench.py run                              # SQLite, temp folder
    .venv/bin/python bench/requests_bench.py run --workdir /tmp/pledge-requests-bench --keep
    .venv/bin/python bench/requests_bench.py run --workdir /tmp/pledge-requests-bench-pg --keep \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/pledge_bench_req_main \\
        --keystore-url postgresql+psycopg://postgres@127.0.0.1:5432/pledge_bench_req_keys
    .venv/bin/python bench/requests_bench.py run --jobs-url redis://127.0.0.1:6379/13 ...
    .venv/bin/python bench/requests_bench.py clean --workdir /tmp/pledge-requests-bench [URLs]

`run` starts its own `pledge serve` (see vault_bench.py) with its in-process job worker, on
Pledge's database (SQLite files in the work folder unless URLs are given) and on the shop's
database on PostgreSQL (`--shop-url`, database `pledge_bench_shop` by default), declared by
the reference dataset file `src/pledge/reference/shop-datasets.yaml`.

- The vault is seeded in bulk by vault_bench.py's `seed` (newsletter subscribers
  `subscriber<i>@bench.example`, name and e-mail, sealed and indexed by the vault's own
  functions). Each person the benchmark asks for is given a shop checkout first (name,
  e-mail, phone, addresses, card, order) through `POST /v1/collect/batch`.
- The shop's `customers`, `orders`, `order_lines` and `support_tickets` get `--rows` rows
  each (customer i is subscriber i; each customer has one order, one order line and one
  ticket, spread over the tables' ids), with the indexes the dataset file asks for.
- Access: submit (`POST /v1/requests`), wait `--gap` seconds (staff verify later, not in the
  same millisecond), then time from `POST /v1/requests/{id}/verify` until
  `GET /v1/requests/{id}` shows `completed` with `package_ready`, polling every `--poll`
  seconds. Deletion: the same from `POST .../approve` (after verify) to `completed`.
- Throughput: `--clients` threads each submit, verify and wait for access requests of
  distinct people, `--requests` in all; requests/s = requests / (first submission to last
  completion).
- In process, after the server stopped: the same fulfilment (`Fulfilment.fulfil`) run
  directly and timed step by step (vault read, connected databases, package, close).

With `--workdir DIR --keep` the folder (SQLite files, master key, secret, the people already
used) and the databases are kept, and the next run with the same options reuses the seeded
vault and shop; without `--keep` everything is dropped at the end. Mail goes to an SMTP sink
in this process.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import json
import os
import pstats
import queue
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from vault_bench import (
    REPO,
    bench_settings,
    environment_of,
    free_port,
    percentile,
    prepared,
    seed,
    server,
)

import pledge
import pledge.requests.fulfilment as fulfilment_module
from pledge.app import Services, build_services
from pledge.config import Settings
from pledge.datasets import ConnectedDatabases, load_datasets
from pledge.policy.document import RequestKind
from pledge.requests import Channel, Intake
from pledge.runtime import Runtime

SHOP_FILE = REPO / "src" / "pledge" / "reference" / "shop-datasets.yaml"
SHOP_URL_ENV = "PLEDGE_SHOP_DATABASE_URL"
DEFAULT_SHOP_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/pledge_bench_shop"
SCOPES = ("requests:read", "requests:write", "collect")
NOTE = "called back on the number we hold; two data points matched"
TIMEOUT_S = 120.0
FIDES_LATENCY_S = 0.25
FIDES_THROUGHPUT = 5.6


def email_of(i: int) -> str:
    """Subscriber i's address, as vault_bench.seed wrote it."""
    return f"subscriber{i}@bench.example"


def phone_of(i: int) -> str:
    """Subscriber i's phone number in E.164, unique for i < 1,000,000."""
    return f"+1415{2_000_000 + i:07d}"


# --- the shop's database ------------------------------------------------------------------------

SHOP_TABLES = ("support_tickets", "order_lines", "orders", "customers")
SHOP_SCHEMA = (
    """CREATE TABLE customers (
        id integer PRIMARY KEY, email varchar(320) NOT NULL, phone varchar(32),
        full_name varchar(200))""",
    """CREATE TABLE orders (
        id integer PRIMARY KEY, customer_id integer NOT NULL, total_cents integer NOT NULL,
        shipping_address varchar(500))""",
    """CREATE TABLE order_lines (
        id integer PRIMARY KEY, order_id integer NOT NULL, product varchar(200) NOT NULL,
        quantity integer NOT NULL, price_cents integer NOT NULL)""",
    """CREATE TABLE support_tickets (
        id integer PRIMARY KEY, customer_id integer NOT NULL, subject varchar(200), body text)""",
)
# Customer c (id c + 1) is subscriber c. Orders and tickets are spread over the customers by
# multiplying by a prime (a permutation of the ids when rows is not a multiple of it), so one
# person's rows are not neighbours in any table.
SHOP_FILL = (
    """INSERT INTO customers
       SELECT i + 1, 'subscriber' || i || '@bench.example', '+1415' || (2000000 + i),
              'Subscriber ' || i
       FROM generate_series(0, :rows - 1) AS i""",
    """INSERT INTO orders
       SELECT k + 1, 1 + (k::bigint * 7919) % :rows, 1000 + k % 9000,
              (k % 997) || ' Elm Street, Springfield'
       FROM generate_series(0, :rows - 1) AS k""",
    """INSERT INTO order_lines
       SELECT k + 1, k + 1, 'Frame ' || (k % 50), 1 + k % 3, 1000 + k % 9000
       FROM generate_series(0, :rows - 1) AS k""",
    """INSERT INTO support_tickets
       SELECT k + 1, 1 + (k::bigint * 104729) % :rows, 'Question about order ' || (k + 1),
              'Hello, where is my order? Please call me back. Ticket ' || k
       FROM generate_series(0, :rows - 1) AS k""",
)
SHOP_INDEXES = (
    "ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email)",
    "CREATE INDEX customers_phone ON customers (phone)",
    "CREATE INDEX orders_customer_id ON orders (customer_id)",
    "CREATE INDEX order_lines_order_id ON order_lines (order_id)",
    "CREATE INDEX support_tickets_customer_id ON support_tickets (customer_id)",
    "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
    "ALTER TABLE order_lines ADD FOREIGN KEY (order_id) REFERENCES orders (id)",
    "ALTER TABLE support_tickets ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
)


def _admin(url: str) -> sa.Engine:
    """An autocommit engine on the same PostgreSQL server's `postgres` database."""
    return sa.create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database `url` names, unless it exists."""
    name = make_url(url).database
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            exists = connection.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database `url` names, if it exists."""
    name = make_url(url).database
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def prepare_shop(url: str, rows: int) -> None:
    """The shop's four tables with `rows` rows each, built unless they already are."""
    if make_url(url).get_backend_name() != "postgresql":
        raise SystemExit("--shop-url must be a PostgreSQL URL (the shop is filled server-side)")
    ensure_database(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            # Deletions remove tickets, so the row counts are checked once, when filled.
            if "bench_shop" in sa.inspect(connection).get_table_names():
                filled = connection.scalar(sa.text("SELECT rows FROM bench_shop"))
                if filled == rows:
                    print(f"shop: reusing {rows:,} rows per table in {make_url(url).database}")
                    return
        print(f"shop: filling 4 tables with {rows:,} rows each in {make_url(url).database}")
        started = time.perf_counter()
        with engine.begin() as connection:
            for table in (*SHOP_TABLES, "bench_shop"):
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
            for statement in SHOP_SCHEMA:
                connection.execute(sa.text(statement))
            for statement, table in zip(SHOP_FILL, reversed(SHOP_TABLES), strict=True):
                connection.execute(sa.text(statement), {"rows": rows})
                print(f"  {table}: {time.perf_counter() - started:.0f} s", flush=True)
            for statement in SHOP_INDEXES:
                connection.execute(sa.text(statement))
            print(f"  indexes and foreign keys: {time.perf_counter() - started:.0f} s")
            connection.execute(sa.text("CREATE TABLE bench_shop (rows integer NOT NULL)"))
            connection.execute(sa.text("INSERT INTO bench_shop VALUES (:rows)"), {"rows": rows})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))
        print(f"  filled in {time.perf_counter() - started:.0f} s")
    finally:
        engine.dispose()


def unmasked(url: str, people: list[int]) -> set[int]:
    """Those of `people` whose shop row still holds their address (not erased before)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id - 1 FROM customers WHERE id = ANY(:ids) AND email LIKE '%@%'"),
                {"ids": [i + 1 for i in people]},
            )
            return {row[0] for row in rows}
    finally:
        engine.dispose()


# --- Pledge's side ------------------------------------------------------------------------------


@dataclass
class Workdir:
    """The work folder: SQLite files, master key, secret key and the people already used."""

    path: Path

    @property
    def secret(self) -> str:
        file = self.path / "secret"
        if not file.exists():
            file.write_text(secrets.token_urlsafe(32))
        return file.read_text()

    def used(self) -> set[int]:
        file = self.path / "used.json"
        return set(json.loads(file.read_text())) if file.exists() else set()

    def use(self, people: list[int]) -> None:
        (self.path / "used.json").write_text(json.dumps(sorted(self.used() | set(people))))


def settings_for(workdir: Workdir, args: argparse.Namespace, smtp_port: int) -> Settings:
    """vault_bench's settings, with this run's secret, job queue, SMTP sink and dataset file."""
    base = bench_settings(workdir.path, args.database_url, args.keystore_url)
    return base.model_copy(
        update={
            "secret_key": SecretStr(workdir.secret),
            "jobs_url": args.jobs_url or base.jobs_url,
            "smtp_port": smtp_port,
            "datasets_file": SHOP_FILE,
        }
    )


def seeded(settings: Settings, workdir: Workdir, subjects: int) -> None:
    """Seed the vault with vault_bench's subscribers unless this folder's run already did.

    (Erasures add subjects of their own, the records kept by law, so the count is not it.)"""
    marker = workdir.path / "seeded"
    if marker.exists() and int(marker.read_text()) == subjects:
        print(f"vault: reusing {subjects:,} subjects")
        return
    with Runtime.build(settings) as runtime, runtime.engine.connect() as connection:
        held = connection.scalar(sa.text("SELECT count(*) FROM subjects"))
    if held:
        raise SystemExit(f"the vault holds {held} subjects already: run `clean` first")
    print(f"vault: seeding {subjects:,} subjects into {settings.database_url.split('@')[-1]}")
    seed(settings, subjects)
    marker.write_text(str(subjects))


@contextmanager
def smtp_sink() -> Iterator[int]:
    """An SMTP server that accepts every message and keeps none, in a process of its own (in
    this one it would wait for the GIL behind the client threads, and slow the server's mail
    jobs down with it); yields its port."""
    port = free_port()
    command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    process = subprocess.Popen([*command, "-c", "aiosmtpd.handlers.Sink"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the SMTP sink did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def job_workers(settings: Settings, processes: int, threads: int) -> Iterator[None]:
    """`processes` x `pledge worker --workers threads`, on the server's settings (the queue
    must be Redis: a SQLite queue is a file of the server's machine)."""
    env = environment_of(settings)
    command = [sys.executable, "-m", "pledge.cli", "worker", "--workers", str(threads)]
    started = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=60)


# --- the client ---------------------------------------------------------------------------------


class Api:
    """Pledge's request API on one keep-alive connection (the standard library's client, which
    costs a third of httpx's CPU: the client shares the two cores with the server)."""

    def __init__(self, base: str, token: str) -> None:
        address = urlsplit(base)
        self.connection = http.client.HTTPConnection(
            address.hostname or "", address.port, timeout=60
        )
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.polls = 0
        """Status reads made by `wait`."""

    def close(self) -> None:
        self.connection.close()

    def call(self, method: str, path: str, body: object = None) -> Any:
        encoded = None if body is None else json.dumps(body).encode()
        try:
            self.connection.request(method, path, body=encoded, headers=self.headers)
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closes a keep-alive connection idle for 5 s (a long --gap): the
            # request never reached it, so sending it again on a new one is safe.
            self.connection.close()
            self.connection.request(method, path, body=encoded, headers=self.headers)
            response = self.connection.getresponse()
        answer = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {answer[:300]!r}")
        return json.loads(answer)

    def submit(self, kind: str, person: int) -> str:
        """A request received by phone and typed in by staff; its ID."""
        created = self.call(
            "POST",
            "/v1/requests",
            {
                "kind": kind,
                "email": email_of(person),
                "residence": "US-CA",
                "channel": "phone",
                "entered_by": "bench",
            },
        )
        return str(created["id"])

    def verify(self, request_id: str) -> str:
        return str(self.call("POST", f"/v1/requests/{request_id}/verify", {"note": NOTE})["status"])

    def approve(self, request_id: str) -> None:
        self.call("POST", f"/v1/requests/{request_id}/approve")

    def wait(self, request_id: str, poll: float, *, package: bool) -> dict[str, Any]:
        """Poll until the request is completed (with its package ready, for an access)."""
        deadline = time.perf_counter() + TIMEOUT_S
        while time.perf_counter() < deadline:
            self.polls += 1
            view: dict[str, Any] = self.call("GET", f"/v1/requests/{request_id}")
            if view["status"] == "completed" and (view["package_ready"] or not package):
                return view
            if view["status"] == "denied":
                raise RuntimeError(f"request {request_id} was denied: {view['denial_reason']}")
            time.sleep(poll)
        raise RuntimeError(f"request {request_id} not completed within {TIMEOUT_S:.0f} s")


def enrich(api: Api, people: list[int]) -> None:
    """A shop checkout for each person: name, e-mail, phone, addresses, card and order."""
    for start in range(0, len(people), 500):
        items = [
            {
                "collection_point": "purchase_order",
                "fields": {
                    "name": f"Subscriber {i}",
                    "email": email_of(i),
                    "phone": phone_of(i),
                    "shipping_address": f"{i % 997} Elm Street, Springfield",
                    "billing_address": f"{i % 997} Elm Street, Springfield",
                    "card": "4111 1111 1111 1111",
                    "order": f"order {i}: 1 frame",
                },
                "source": "web_form",
            }
            for i in people[start : start + 500]
        ]
        api.call("POST", "/v1/collect/batch", {"items": items})


@dataclass
class Latencies:
    """One kind of request, timed from the staff action that starts it to its completion."""

    action_s: list[float] = field(default_factory=list)
    """The staff call itself (verify, or approve)."""
    total_s: list[float] = field(default_factory=list)
    outcome: dict[str, Any] | None = None


def access_latency(api: Api, people: list[int], gap: float, poll: float) -> Latencies:
    """Verify an access request `gap` seconds after it arrived; time until the package."""
    result = Latencies()
    for n, person in enumerate(people, 1):
        request_id = api.submit("access", person)
        time.sleep(gap)
        started = time.perf_counter()
        status = api.verify(request_id)
        result.action_s.append(time.perf_counter() - started)
        if status not in {"in_progress", "completed"}:
            raise RuntimeError(f"access request verified into {status}")
        view = api.wait(request_id, poll, package=True)
        result.total_s.append(time.perf_counter() - started)
        result.outcome = view["outcome"]
        print(f"  access {n}/{len(people)}: {result.total_s[-1] * 1000:.0f} ms", flush=True)
    return result


def deletion_latency(api: Api, people: list[int], gap: float, poll: float) -> Latencies:
    """Verify, then approve a deletion `gap` seconds later; time from approval to done."""
    result = Latencies()
    for n, person in enumerate(people, 1):
        request_id = api.submit("deletion", person)
        if api.verify(request_id) != "verified":
            raise RuntimeError("a deletion should wait for staff approval")
        time.sleep(gap)
        started = time.perf_counter()
        api.approve(request_id)
        result.action_s.append(time.perf_counter() - started)
        view = api.wait(request_id, poll, package=False)
        result.total_s.append(time.perf_counter() - started)
        result.outcome = view["outcome"]
        print(f"  deletion {n}/{len(people)}: {result.total_s[-1] * 1000:.0f} ms", flush=True)
    return result


@dataclass
class Throughput:
    """Access requests from several clients at once."""

    requests: int
    clients: int
    elapsed_s: float
    per_request_s: list[float]
    pledge_cpu_s: float | None = None
    """CPU time Pledge's processes (server, workers) used meanwhile; None where /proc is not."""
    polls: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed_s


def throughput(base: str, token: str, people: list[int], clients: int, poll: float) -> Throughput:
    """`clients` threads, each submitting, verifying and awaiting access requests for the next
    person in line until none is left."""
    line: queue.Queue[int] = queue.Queue()
    for person in people:
        line.put(person)
    starts: list[float] = []
    ends: list[float] = []
    per_request: list[float] = []
    failures: list[str] = []
    polls: list[int] = []
    go = threading.Event()

    def client() -> None:
        api = Api(base, token)
        go.wait()
        try:
            while True:
                try:
                    person = line.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                starts.append(started)
                request_id = api.submit("access", person)
                api.verify(request_id)
                api.wait(request_id, poll, package=True)
                ended = time.perf_counter()
                ends.append(ended)
                per_request.append(ended - started)
        except Exception as error:  # noqa: BLE001 - reported after the threads stop
            failures.append(repr(error))
        finally:
            polls.append(api.polls)
            api.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    cpu_before = pledge_cpu_seconds()
    go.set()
    for thread in threads:
        thread.join()
    cpu_after = pledge_cpu_seconds()
    if failures:
        raise RuntimeError(failures[0])
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Throughput(len(people), clients, max(ends) - min(starts), per_request, cpu, sum(polls))


def pledge_cpu_seconds() -> float | None:
    """CPU time (user and system) used so far by this process's descendants that run Pledge
    (`pledge serve`, its worker processes, `pledge worker`), read from /proc; None without it."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    mine = {os.getpid()}
    changed = True
    while changed:
        found = {pid for pid, parent in parents.items() if parent in mine and pid not in mine}
        mine |= found
        changed = bool(found)
    mine.discard(os.getpid())
    pledge = [pid for pid in mine if "aiosmtpd" not in commands.get(pid, "")]
    return sum(ticks[pid] for pid in pledge) / os.sysconf("SC_CLK_TCK")


# --- in process ---------------------------------------------------------------------------------

Steps = dict[str, float]


def _timed(steps: Steps, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            steps[name] += time.perf_counter() - started

    return wrapper


def _lap(steps: Steps, name: str, since: float) -> float:
    now = time.perf_counter()
    steps[name] = now - since
    return now


def in_process(
    settings: Settings, access_people: list[int], deletion_people: list[int], profile: bool
) -> dict[str, list[Steps]]:
    """Fulfil requests by calling `Fulfilment.fulfil` directly, timing each of its steps.

    The requests are received and verified through the request desk; their jobs go to a queue
    of this process's own, which the benchmark runs in this thread (`JobQueue.drain`), after
    calling the fulfilment itself; each request's whole server-side work is timed too."""
    with tempfile.TemporaryDirectory(prefix="pledge-bench-jobs-") as jobs_dir:
        local = settings.model_copy(update={"jobs_url": f"sqlite:///{jobs_dir}/jobs.db"})
        with Runtime.build(local) as runtime:
            services = build_services(runtime)
            connected = services.fulfilment.connected
            if connected is None:
                raise RuntimeError("no connected databases: PLEDGE_DATASETS_FILE is not set")
            steps: Steps = defaultdict(float)
            _instrument(services, connected, steps)
            build = fulfilment_module.build_package
            fulfilment_module.build_package = _timed(steps, "build the package (JSON)", build)
            results: dict[str, list[Steps]] = defaultdict(list)
            profiler = cProfile.Profile() if profile else None
            try:
                for kind, people in (
                    (RequestKind.ACCESS, access_people),
                    (RequestKind.DELETION, deletion_people),
                ):
                    for index, person in enumerate(people):
                        # The first of each kind builds what is built once (the note scanner,
                        # the policy's compiled form, statements): not profiled.
                        watch = profiler if index else None
                        fulfilled, life = _one_request(services, steps, kind, person, watch)
                        results[kind.value].append(fulfilled)
                        results[f"{kind.value} lifecycle"].append(life)
            finally:
                fulfilment_module.build_package = build
                connected.close()
            if profiler is not None:
                print(
                    "\nprofile of the in-process requests but the first of each kind, intake to"
                    " answer (cumulative, top 60; then by own time, top 40):"
                )
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
                pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    return results


def _instrument(services: Services, connected: ConnectedDatabases, steps: Steps) -> None:
    """Time the steps of a fulfilment into `steps` (the ones the code has: it changes)."""
    vault, desk = services.vault, services.requests
    patches: list[tuple[object, str, str]] = [
        (vault, "read", "vault: read and decrypt, audited"),
        (vault, "categories_held", "vault: categories held"),
        (vault, "shred", "vault: crypto-shred"),
        (services.consent, "history", "consent history"),
        (connected, "access", "connected databases: find and read rows"),
        (connected, "erase", "connected databases: find and erase rows"),
        (desk, "details", "request details (unseal)"),
        (desk, "email_index_of", "past requests"),
        (desk, "requests_of", "past requests"),
        (desk, "complete", "close: seal package, status, answer mail job"),
        (desk, "progress", "progress of the job: read"),
        (desk, "save_progress", "progress of the job: step recorded, audited"),
        (services.fulfilment, "_queue_recipient_notices", "recipient notice jobs"),
        (services.fulfilment, "_policy", "policy in force"),
    ]
    for target, name, label in patches:
        if hasattr(target, name):
            setattr(target, name, _timed(steps, label, getattr(target, name)))


def _one_request(
    services: Services,
    steps: Steps,
    kind: RequestKind,
    person: int,
    profiler: cProfile.Profile | None,
) -> tuple[Steps, Steps]:
    """One request from intake to its answer mail, in this thread: the fulfilment's steps,
    and the whole request's."""
    desk = services.requests
    life: Steps = {}
    if profiler is not None:
        profiler.enable()
    clock = time.perf_counter()
    request_id = desk.submit(
        Intake(kind, Channel.PHONE, "US-CA", email_of(person), entered_by="bench"),
        actor="bench",
    )
    clock = _lap(life, "intake (POST /v1/requests)", clock)
    services.jobs.drain()
    clock = _lap(life, "jobs: acknowledgement mail", clock)
    desk.staff_verify(request_id, actor="bench", note=NOTE)
    if kind is RequestKind.DELETION:
        desk.approve(request_id, actor="bench")
    clock = _lap(life, "staff verify (and approve)", clock)
    steps.clear()
    services.fulfilment.fulfil(request_id)
    fulfilled = dict(steps)
    clock = _lap(life, "jobs: fulfilment (the steps above)", clock)
    fulfilled["other"] = life["jobs: fulfilment (the steps above)"] - sum(steps.values())
    fulfilled["total"] = life["jobs: fulfilment (the steps above)"]
    services.jobs.drain()
    clock = _lap(life, "jobs: answer mail, notices, job bookkeeping", clock)
    life["total"] = sum(life.values())
    desk.record_of(request_id)
    _lap(life, "one status read (GET /v1/requests/{id})", clock)
    if profiler is not None:
        profiler.disable()
    if desk.get(request_id).status.value != "completed":
        raise RuntimeError(f"{kind.value} request not completed in process")
    return fulfilled, life


# --- reports ------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def print_latency(title: str, result: Latencies, target: float | None) -> None:
    if not result.total_s:
        return  # --latency-requests 0: throughput only
    median, worst = statistics.median(result.total_s), max(result.total_s)
    verdict = (
        ""
        if target is None
        else f"  target <= {ms(target)}: " + ("met" if median <= target else "NOT met")
    )
    print(
        f"{title}: median {ms(median)}, min {ms(min(result.total_s))}, max {ms(worst)} "
        f"(n={len(result.total_s)}; the staff call itself: median "
        f"{ms(statistics.median(result.action_s))}){verdict}"
    )
    print(f"  outcome of the last one: {json.dumps(result.outcome, sort_keys=True)}")


def print_steps(kind: str, runs: list[Steps]) -> None:
    if not runs:
        return
    names = list(dict.fromkeys(name for run in runs for name in run))
    print(f"in process, {kind} (n={len(runs)}): median per step")
    for name in names:
        values = [run.get(name, 0.0) for run in runs]
        print(f"  {name:<48} {statistics.median(values) * 1000:8.2f} ms")


# --- commands -----------------------------------------------------------------------------------


def pick(workdir: Workdir, shop_url: str, population: int, count: int) -> list[int]:
    """`count` people nobody asked for in an earlier run, at random."""
    used = workdir.used()
    chosen: list[int] = []
    while len(chosen) < count:
        candidates = [i for i in random.sample(range(population), count * 2) if i not in used]
        fresh = unmasked(shop_url, candidates)
        for i in candidates:
            if i in fresh and i not in chosen and len(chosen) < count:
                chosen.append(i)
    workdir.use(chosen)
    return chosen


@dataclass(frozen=True)
class Cast:
    """The people each measurement asks for: distinct, and new to the vault and the shop."""

    warm_access: list[int]
    warm_deletion: list[int]
    access: list[int]
    deletion: list[int]
    crowd: list[int]
    local_access: list[int]
    local_deletion: list[int]

    @property
    def everyone(self) -> list[int]:
        return [
            *self.warm_access,
            *self.warm_deletion,
            *self.access,
            *self.deletion,
            *self.crowd,
            *self.local_access,
            *self.local_deletion,
        ]

    @classmethod
    def chosen(cls, workdir: Workdir, args: argparse.Namespace) -> Cast:
        warm, n, m = 2, args.latency_requests, args.requests
        sizes = [warm, warm, n, n, m, n, n]
        people = pick(workdir, args.shop_url, min(args.subjects, args.rows), sum(sizes))
        parts, start = [], 0
        for size in sizes:
            parts.append(people[start : start + size])
            start += size
        return cls(*parts)


@dataclass(frozen=True)
class Figures:
    access: Latencies
    deletion: Latencies
    crowd: Throughput
    steps: dict[str, list[Steps]]


def setup(args: argparse.Namespace, workdir: Workdir, smtp_port: int) -> tuple[Settings, str]:
    """The shop and the vault ready (built or reused), and an API key; the environment the
    server reads set."""
    for url in (args.database_url, args.keystore_url):
        if url and make_url(url).get_backend_name() == "postgresql":
            ensure_database(url)
    prepare_shop(args.shop_url, args.rows)
    os.environ[SHOP_URL_ENV] = args.shop_url
    os.environ["PLEDGE_DATASETS_FILE"] = str(SHOP_FILE)
    os.environ["PLEDGE_JOBS_WORKERS"] = str(args.job_threads)
    os.environ["PLEDGE_SMTP_PORT"] = str(smtp_port)
    settings = settings_for(workdir, args, smtp_port)
    token = prepared(settings, *SCOPES)
    seeded(settings, workdir, args.subjects)
    with ConnectedDatabases(load_datasets(SHOP_FILE), mask_key=b"0" * 32) as databases:
        problems = databases.check()
    print("shop: dataset file matches the database" if not problems else f"shop: {problems}")
    return settings, token


def measure(args: argparse.Namespace, settings: Settings, token: str, cast: Cast) -> Figures:
    """Every measurement: over HTTP on one server, then in process."""
    separate = args.worker_processes
    if separate and settings.jobs_url.startswith("sqlite"):
        raise SystemExit("--worker-processes needs --jobs-url redis://...")
    if separate:
        options, where = ["--no-worker"], f"in {separate} `pledge worker` process(es)"
    else:
        options = [] if settings.jobs_url.startswith("sqlite") else ["--worker"]
        where = "in the server"
    if args.server_processes > 1:
        options.extend(["--workers", str(args.server_processes)])
        where += f", each of {args.server_processes} server processes"
    print(
        f"serving on {settings.database_url.split('://')[0]}, jobs on "
        f"{settings.jobs_url.split('://')[0]} ({args.job_threads} job threads {where})"
    )
    n, m = args.latency_requests, args.requests
    with (
        job_workers(settings, separate, args.job_threads),
        server(settings, *options) as base,
    ):
        api = Api(base, token)
        try:
            print(f"enriching {len(cast.everyone)} people with a shop checkout")
            enrich(api, cast.everyone)
            print("warming up")
            access_latency(api, cast.warm_access, args.gap, args.poll)
            deletion_latency(api, cast.warm_deletion, args.gap, args.poll)
            print(f"access latency, {n} people, verify {args.gap} s after intake")
            access = access_latency(api, cast.access, args.gap, args.poll)
            print(f"deletion latency, {n} people, approve {args.gap} s after verify")
            deletion = deletion_latency(api, cast.deletion, args.gap, args.poll)
        finally:
            api.close()
        print(f"throughput: {m} access requests from {args.clients} clients")
        crowd = throughput(base, token, cast.crowd, args.clients, args.throughput_poll)
    print("in process: fulfilment timed step by step")
    steps = in_process(settings, cast.local_access, cast.local_deletion, args.profile)
    return Figures(access, deletion, crowd, steps)


def code_version() -> str:
    """The commit measured and whether src/ differs from it (or where pledge came from)."""
    git = shutil.which("git") or "git"

    def ask(*arguments: str) -> str:
        answer = subprocess.run(
            [git, "-C", str(REPO), *arguments], check=False, capture_output=True, text=True
        )
        return answer.stdout.strip()

    where = Path(pledge.__file__).resolve().parent
    if where != REPO / "src" / "pledge":
        return f"pledge imported from {where}"
    commit = ask("rev-parse", "--short", "HEAD")
    changed = ask("status", "--porcelain", "--", "src")
    return f"commit {commit}{' with changes in src/' if changed else ''}"


def summary(args: argparse.Namespace, settings: Settings, figures: Figures) -> None:
    processes = args.worker_processes
    separate = f" in each of {processes} worker processes" if processes else ""
    if args.server_processes > 1:
        separate += f", {args.server_processes} server processes"
    print(f"\n== {code_version()}")
    print(
        f"== {args.subjects:,} subjects in the vault ({settings.database_url.split('://')[0]}), "
        f"{args.rows:,} rows per shop table (PostgreSQL), jobs on "
        f"{settings.jobs_url.split('://')[0]}, {args.job_threads} job threads"
        f"{separate}; "
        f"poll {ms(args.poll)}"
    )
    print_latency("access, verify -> package ready", figures.access, FIDES_LATENCY_S)
    print_latency("deletion, approve -> completed", figures.deletion, None)
    crowd = figures.crowd
    per = crowd.per_request_s
    print(
        f"throughput: {crowd.rate:.1f} requests/s end to end ({crowd.requests} access requests, "
        f"{crowd.clients} clients, {crowd.elapsed_s:.1f} s; poll "
        f"{ms(args.throughput_poll)}); each request submit -> package: p50 "
        f"{ms(percentile(per, 50))}, max {ms(max(per))}  target >= "
        f"{10 * FIDES_THROUGHPUT:.0f}/s: "
        + ("met" if crowd.rate >= 10 * FIDES_THROUGHPUT else "NOT met")
    )
    if crowd.pledge_cpu_s is not None:
        print(
            f"  Pledge's processes used {crowd.pledge_cpu_s:.1f} s of CPU meanwhile: "
            f"{ms(crowd.pledge_cpu_s / crowd.requests)} per request, with its "
            f"{crowd.polls / crowd.requests:.1f} status reads on average"
        )
    for kind in ("access", "deletion", "access lifecycle", "deletion lifecycle"):
        print_steps(kind, figures.steps[kind])


def run(args: argparse.Namespace, workdir: Workdir) -> None:
    with smtp_sink() as smtp_port:
        settings, token = setup(args, workdir, smtp_port)
        if args.prepare_only:
            print(f"prepared: {workdir.path} and the databases are ready for `run`")
            return
        cast = Cast.chosen(workdir, args)
        figures = measure(args, settings, token, cast)
    summary(args, settings, figures)


def clean(args: argparse.Namespace) -> None:
    for url in (args.shop_url, args.database_url, args.keystore_url):
        if url and make_url(url).get_backend_name() == "postgresql":
            drop_database(url)
            print(f"dropped {make_url(url).database}")
    if args.workdir and Path(args.workdir).exists():
        shutil.rmtree(args.workdir)
        print(f"removed {args.workdir}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "clean"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", help="work folder (kept with --keep, then reused)")
        p.add_argument("--database-url", help="Pledge's database (SQLite in the folder if not)")
        p.add_argument("--keystore-url", help="Pledge's key store (likewise)")
        p.add_argument("--shop-url", default=DEFAULT_SHOP_URL, help="the shop (PostgreSQL)")
    p = sub.choices["run"]
    p.add_argument("--keep", action="store_true", help="keep the folder and databases")
    p.add_argument(
        "--prepare-only", action="store_true", help="build the shop and seed the vault, then stop"
    )
    p.add_argument("--jobs-url", help="PLEDGE_JOBS_URL (default: SQLite in the folder)")
    p.add_argument("--job-threads", type=int, default=2, help="PLEDGE_JOBS_WORKERS")
    p.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="run jobs in this many `pledge worker` processes instead of the server (Redis)",
    )
    p.add_argument(
        "--server-processes",
        type=int,
        default=1,
        help="`pledge serve --workers N` (each runs job threads too, unless --worker-processes)",
    )
    p.add_argument("--subjects", type=int, default=1_000_000)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per shop table")
    p.add_argument(
        "--latency-requests", type=int, default=10, help="people per latency (0: throughput only)"
    )
    p.add_argument("--requests", type=int, default=100, help="throughput: requests in all")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--gap", type=float, default=1.0, help="seconds before the staff action")
    p.add_argument("--poll", type=float, default=0.005, help="latency: seconds between polls")
    p.add_argument("--throughput-poll", type=float, default=0.05, help="throughput: likewise")
    p.add_argument(
        "--profile", action="store_true", help="cProfile the in-process requests, intake to answer"
    )
    args = parser.parse_args()
    if args.command == "clean":
        clean(args)
        return
    if (args.keep or args.prepare_only) and not args.workdir:
        parser.error("--keep and --prepare-only need --workdir")
    args.keep = args.keep or args.prepare_only
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="pledge-requests-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        run(args, Workdir(folder))
    finally:
        if not args.keep:
            args.workdir = str(folder)
            clean(args)


if __name__ == "__main__":
    main()
