"""Vault benchmarks: the purpose check in-process, collection and purpose-bound reads over HTTP.

    .venv/bin/python bench/vault_bench.py purpose-check
    .venv/bin/python bench/vault_bench.py collect [--database-url URL --keystore-url URL]
    .venv/bin/python bench/vault_bench.py read --subjects 1000000 [--database-url ...
        --keystore-url ...]

Each run starts its own `pledge serve` process on a fresh database (SQLite files in a temp
folder unless URLs are given) and prints its figures; bench/RESULTS.md records them. The
`read` benchmark seeds the vault in bulk with the vault's own functions (data keys wrapped by
the keyring, values sealed by `seal` with the same associated data, identities indexed by the
same blind index), so the rows are the ones `collect` would write, only written faster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
from sqlalchemy import insert

from pledge.apikeys import create_api_key
from pledge.config import Environment, Settings
from pledge.keyring.tables import DataKey
from pledge.migrations import upgrade_database
from pledge.policy import current_version, load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.vault.rules import value_aad
from pledge.vault.sealing import seal
from pledge.vault.tables import Identity, PersonalValue, Subject

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "policies" / "reference.yaml"


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) of `samples`, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(title: str, samples_s: list[float]) -> None:
    """Print p50/p99/mean of latencies given in seconds."""
    us = [s * 1e6 for s in samples_s]
    print(
        f"{title}: n={len(us)} p50={percentile(us, 50):.1f}µs p99={percentile(us, 99):.1f}µs "
        f"mean={statistics.fmean(us):.1f}µs"
    )


# --- purpose check -------------------------------------------------------------------------


def bench_purpose_check(calls: int) -> None:
    """Latency of the compiled purpose check, one call at a time."""
    policy = load_policy_file(REFERENCE)
    purpose_map = policy.purpose_map
    pairs = [(p, c) for p in policy.document.purposes for c in policy.document.data_categories]
    random.seed(7)
    chosen = [random.choice(pairs) for _ in range(calls)]
    timer = time.perf_counter_ns
    samples = []
    for purpose, category in chosen:
        start = timer()
        purpose_map.permits(purpose, category)
        samples.append((timer() - start) / 1e9)
    report("purpose check permits(purpose, category)", samples)
    samples = []
    for purpose, _ in chosen[: calls // 10]:
        start = timer()
        purpose_map.allowed_categories(purpose)
        samples.append((timer() - start) / 1e9)
    report("purpose check allowed_categories(purpose)", samples)


# --- a server of its own ------------------------------------------------------------------------


def bench_settings(workdir: Path, database_url: str | None, keystore_url: str | None) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment=Environment.PRODUCTION,
        secret_key=secrets.token_urlsafe(32),  # type: ignore[arg-type]
        database_url=database_url or f"sqlite:///{workdir / 'bench.db'}",
        keystore_url=keystore_url or f"sqlite:///{workdir / 'bench-keys.db'}",
        master_key_file=workdir / "bench-master.key",
        public_url="https://privacy.bench.example",
        jobs_url=f"sqlite:///{workdir / 'bench-jobs.db'}",
        log_level="WARNING",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def environment_of(settings: Settings) -> dict[str, str]:
    """The environment a `pledge` command started by a benchmark runs with: `settings`."""
    return {
        **os.environ,
        "PLEDGE_ENVIRONMENT": settings.environment.value,
        "PLEDGE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "PLEDGE_DATABASE_URL": settings.database_url,
        "PLEDGE_KEYSTORE_URL": settings.keystore_url,
        "PLEDGE_MASTER_KEY_FILE": str(settings.master_key_file),
        "PLEDGE_PUBLIC_URL": settings.public_url,
        "PLEDGE_JOBS_URL": settings.jobs_url,
        "PLEDGE_LOG_LEVEL": "WARNING",
    }


@contextmanager
def server(settings: Settings, *options: str) -> Iterator[str]:
    """`pledge serve [options]` in a process of its own, on `settings`; yields its base URL."""
    port = free_port()
    env = environment_of(settings)
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "pledge.cli", "serve", "--port", str(port), *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    errors.seek(0)
                    raise RuntimeError(f"pledge serve stopped: {errors.read().decode()[-2000:]}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def prepared(settings: Settings, *scopes: str) -> str:
    """Migrate, publish the reference policy, and return an API key token."""
    with Runtime.build(settings) as runtime:
        upgrade_database(runtime.engine)
        publish_policy(runtime.sessions, load_policy_file(REFERENCE), published_by="bench")
        _, token = create_api_key(
            runtime.sessions, name="bench", scopes=list(scopes), created_by="bench"
        )
    return token


# --- collect ----------------------------------------------------------------------------------


def newsletter(i: int, age_pass: str) -> dict[str, object]:
    return {
        "collection_point": "newsletter",
        "fields": {
            "email": f"reader{i}-{uuid.uuid4().hex[:6]}@bench.example",
            "name": f"Reader {i}",
        },
        "source": "web_form",
        "age_pass": age_pass,
    }


def age_pass(client: httpx.Client) -> str:
    """The newsletter screens ages: one pass (good for an hour) for the benchmark's sign-ups."""
    answer = client.post(
        "/v1/age-screen", json={"collection_point": "newsletter", "date_of_birth": "1990-04-01"}
    )
    answer.raise_for_status()
    token: str = answer.json()["age_pass"]
    return token


def bench_collect(settings: Settings, singles: int, batches: int, batch_size: int) -> None:
    """Collection throughput over HTTP: one submission per request, then batches."""
    token = prepared(settings, "collect")
    headers = {"Authorization": f"Bearer {token}"}
    with (
        server(settings) as base,
        httpx.Client(base_url=base, headers=headers, timeout=60) as client,
    ):
        screened = age_pass(client)
        for i in range(20):  # warm up (the first scanner build, connections)
            client.post("/v1/collect", json=newsletter(-i, screened))
        samples = []
        started = time.perf_counter()
        for i in range(singles):
            t = time.perf_counter()
            response = client.post("/v1/collect", json=newsletter(i, screened))
            samples.append(time.perf_counter() - t)
            response.raise_for_status()
        elapsed = time.perf_counter() - started
        print(f"collect, one submission per request: {singles / elapsed:.0f} submissions/s")
        report("  latency", samples)
        started = time.perf_counter()
        for b in range(batches):
            items = [newsletter(100_000 + b * batch_size + j, screened) for j in range(batch_size)]
            client.post("/v1/collect/batch", json={"items": items}).raise_for_status()
        elapsed = time.perf_counter() - started
        print(
            f"collect, batches of {batch_size}: {batches * batch_size / elapsed:.0f} submissions/s "
            f"({batches} batches)"
        )


# --- read -------------------------------------------------------------------------------------


def seed(settings: Settings, subjects: int, chunk: int = 10_000) -> list[str]:
    """Bulk-load `subjects` newsletter subscribers (name and e-mail) into the vault."""
    with Runtime.build(settings) as runtime:
        found = current_version(runtime.sessions)
        if found is None:
            raise SystemExit("no policy version is in force")
        version = found[0]
        keyring = runtime.keyring
        ids: list[str] = []
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        for offset in range(0, subjects, chunk):
            subject_rows, key_rows, identity_rows, value_rows = [], [], [], []
            for i in range(offset, min(offset + chunk, subjects)):
                sid = str(uuid.uuid4())
                ids.append(sid)
                data_key = secrets.token_bytes(32)
                key_id, wrapped = keyring.provider.wrap(data_key, f"pledge:data-key:{sid}".encode())
                key_rows.append(
                    {
                        "subject_id": sid,
                        "wrapped": wrapped,
                        "master_key_id": key_id,
                        "created_at": now,
                    }
                )
                subject_rows.append({"id": sid, "created_at": now, "shredded_at": None})
                email = f"subscriber{i}@bench.example"
                identity_rows.append(
                    {
                        "subject_id": sid,
                        "kind": "email",
                        "digest": keyring.blind_index("email", email),
                        "created_at": now,
                    }
                )
                for field, category, value in (
                    ("email", "user.contact.email", email),
                    ("name", "user.name", f"Subscriber {i}"),
                ):
                    value_rows.append(
                        {
                            "subject_id": sid,
                            "category": category,
                            "collection_point": "newsletter",
                            "field": field,
                            "source": "web_form",
                            "entered_by": None,
                            "policy_version_id": version.id,
                            "collected_at": now,
                            "version": 1,
                            "replaces_id": None,
                            "superseded_at": None,
                            "sealed": seal(
                                data_key, value, value_aad(sid, "newsletter", category, field, 1)
                            ),
                            "redacted_sealed": None,
                            "findings": None,
                        }
                    )
            with keyring.sessions() as keystore, keystore.begin():
                keystore.execute(insert(DataKey), key_rows)
            with runtime.sessions() as session, session.begin():
                session.execute(insert(Subject), subject_rows)
                session.execute(insert(Identity), identity_rows)
                session.execute(insert(PersonalValue), value_rows)
            done = min(offset + chunk, subjects)
            if done % 100_000 == 0 or done == subjects:
                rate = done / (time.perf_counter() - started)
                print(f"  seeded {done} subjects ({rate:.0f}/s)", flush=True)
    return ids


def bench_read(settings: Settings, subjects: int, requests: int) -> None:
    """Purpose-bound read latency over HTTP with `subjects` in the vault."""
    token = prepared(settings, "read:marketing.communications.email")
    print(f"seeding {subjects} subjects into {settings.database_url.split('@')[-1]}")
    ids = seed(settings, subjects)
    headers = {"Authorization": f"Bearer {token}"}
    params = {"purpose": "marketing.communications.email"}
    random.seed(11)
    with (
        server(settings) as base,
        httpx.Client(base_url=base, headers=headers, timeout=60) as client,
    ):
        for sid in random.sample(ids, 50):  # warm up
            client.get(f"/v1/subjects/{sid}/data", params=params).raise_for_status()
        samples = []
        for sid in random.sample(ids, requests):
            t = time.perf_counter()
            response = client.get(f"/v1/subjects/{sid}/data", params=params)
            samples.append(time.perf_counter() - t)
            response.raise_for_status()
            if len(response.json()["values"]) != 2:
                raise SystemExit(f"subject {sid}: expected its 2 values")
    report(f"purpose-bound read over HTTP, {subjects} subjects, 1 client", samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("purpose-check")
    check.add_argument("--calls", type=int, default=1_000_000)
    for name in ("collect", "read"):
        p = sub.add_parser(name)
        p.add_argument("--database-url")
        p.add_argument("--keystore-url")
    sub.choices["collect"].add_argument("--singles", type=int, default=2000)
    sub.choices["collect"].add_argument("--batches", type=int, default=20)
    sub.choices["collect"].add_argument("--batch-size", type=int, default=1000)
    sub.choices["read"].add_argument("--subjects", type=int, default=1_000_000)
    sub.choices["read"].add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if args.command == "purpose-check":
        bench_purpose_check(args.calls)
        return
    with tempfile.TemporaryDirectory(prefix="pledge-bench-") as workdir:
        settings = bench_settings(Path(workdir), args.database_url, args.keystore_url)
        if args.command == "collect":
            bench_collect(settings, args.singles, args.batches, args.batch_size)
        else:
            bench_read(settings, args.subjects, args.requests)


if __name__ == "__main__":
    main()
