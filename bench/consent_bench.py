"""Consent benchmarks: decisions, consent writes with 1 and 8 clients, and the audience filter.

    .venv/bin/python bench/consent_bench.py decide
    .venv/bin/python bench/consent_bench.py writes [--database-url URL --keystore-url URL]
    .venv/bin/python bench/consent_bench.py audience --subjects 1000000 [--database-url ...]

Each HTTP run starts its own `pledge serve` (see vault_bench.py) on a fresh database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx2 as httpx
from sqlalchemy import insert
from vault_bench import REFERENCE, bench_settings, prepared, report, server

from pledge.config import Settings
from pledge.consent import Choice, DecisionTable, Method
from pledge.consent.tables import ConsentChoice
from pledge.policy import load_policy_file
from pledge.runtime import Runtime
from pledge.vault.tables import Subject

EMAIL = "marketing.communications.email"
NOTICE = "a" * 64


def bench_decide(calls: int) -> None:
    """The pure decision, in process."""
    table = DecisionTable.compile(load_policy_file(REFERENCE).document)
    now = dt.datetime.now(dt.UTC)
    granted = {EMAIL: Choice(granted=True, seq=1, at=now, method=Method.DOUBLE_OPT_IN)}
    samples = []
    for i in range(calls):
        choices = granted if i % 2 else {}
        start = time.perf_counter_ns()
        table.decide(EMAIL, ["user.contact.email", "user.name"], choices, now=now, gpc=bool(i % 3))
        samples.append((time.perf_counter_ns() - start) / 1e9)
    report("decision, in process (pure, with reasons)", samples)


def subjects_over_http(client: httpx.Client, headers: dict[str, str], count: int) -> list[str]:
    items = [
        {
            "collection_point": "newsletter",
            "fields": {"email": f"w{i}-{uuid.uuid4().hex[:6]}@bench.example"},
        }
        for i in range(count)
    ]
    ids: list[str] = []
    for start in range(0, count, 1000):
        response = client.post(
            "/v1/collect/batch", json={"items": items[start : start + 1000]}, headers=headers
        )
        response.raise_for_status()
        ids += [r["subject_id"] for r in response.json()["results"]]
    return ids


def bench_writes(settings: Settings, per_client: int) -> None:
    """Consent writes per second over HTTP with 1 and 8 clients, and decisions over HTTP."""
    token = prepared(settings, "collect", "consent:write", "decide")
    headers = {"Authorization": f"Bearer {token}"}
    with server(settings) as base, httpx.Client(base_url=base, timeout=60) as client:
        subjects = subjects_over_http(client, headers, 8 * per_client)

        def write(ids: list[str], latencies: list[float]) -> None:
            with httpx.Client(base_url=base, timeout=60, headers=headers) as own:
                for i, subject in enumerate(ids):
                    body = {
                        "purpose": EMAIL,
                        "action": "grant" if i % 2 == 0 else "withdraw",
                        "method": "form_checkbox",
                        "source": "bench",
                        "notice_sha256": NOTICE,
                    }
                    t = time.perf_counter()
                    own.post(f"/v1/subjects/{subject}/consent", json=body).raise_for_status()
                    latencies.append(time.perf_counter() - t)

        for clients in (1, 8):
            share = subjects[: clients * per_client]
            latencies: list[float] = []
            threads = [
                threading.Thread(
                    target=write, args=(share[c * per_client : (c + 1) * per_client], latencies)
                )
                for c in range(clients)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            print(
                f"consent writes over HTTP, {clients} client(s): "
                f"{len(latencies) / elapsed:.0f} writes/s"
            )
            report("  latency", latencies)

        samples = []
        for subject in random.sample(subjects, 1000):
            ask = {"subject_id": subject, "purpose": EMAIL, "categories": ["user.contact.email"]}
            t = time.perf_counter()
            client.post("/v1/decisions", json=ask, headers=headers).raise_for_status()
            samples.append(time.perf_counter() - t)
        print(f"decisions over HTTP, 1 client: {len(samples) / sum(samples):.0f} decisions/s")
        report("  latency", samples)


def seed_choices(settings: Settings, subjects: int, chunk: int = 50_000) -> list[str]:
    """`subjects` subjects, every other one having granted marketing e-mail."""
    ids = [str(uuid.uuid4()) for _ in range(subjects)]
    now = dt.datetime.now(dt.UTC)
    with Runtime.build(settings) as runtime:
        for start in range(0, subjects, chunk):
            part = ids[start : start + chunk]
            with runtime.sessions() as session, session.begin():
                session.execute(
                    insert(Subject),
                    [{"id": s, "created_at": now, "shredded_at": None} for s in part],
                )
                session.execute(
                    insert(ConsentChoice),
                    [
                        {
                            "subject_id": s,
                            "purpose": EMAIL,
                            "granted": True,
                            "seq": start + i + 1,
                            "at": now,
                            "method": "double_opt_in",
                            "expires_at": None,
                        }
                        for i, s in enumerate(part)
                        if (start + i) % 2 == 0
                    ],
                )
    return ids


def bench_audience(settings: Settings, subjects: int) -> None:
    """The audience filter over `subjects` subject IDs, one request, end to end."""
    token = prepared(settings, "decide")
    started = time.perf_counter()
    ids = seed_choices(settings, subjects)
    print(f"seeded {subjects} subjects with choices in {time.perf_counter() - started:.0f} s")
    body = "\n".join(ids).encode()
    params = {"purpose": EMAIL, "categories": "user.contact.email"}
    headers = {"Authorization": f"Bearer {token}", "content-type": "text/plain"}
    with server(settings) as base, httpx.Client(base_url=base, timeout=600) as client:
        client.post("/v1/audiences", params=params, content="\n".join(ids[:1000]), headers=headers)
        for run in range(3):
            t = time.perf_counter()
            response = client.post("/v1/audiences", params=params, content=body, headers=headers)
            response.raise_for_status()
            kept = response.text.count("\n")
            print(
                f"audience of {subjects} subjects, run {run + 1}: "
                f"{time.perf_counter() - t:.2f} s, {kept} allowed"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    decide = sub.add_parser("decide")
    decide.add_argument("--calls", type=int, default=200_000)
    for name in ("writes", "audience"):
        p = sub.add_parser(name)
        p.add_argument("--database-url")
        p.add_argument("--keystore-url")
    sub.choices["writes"].add_argument("--per-client", type=int, default=250)
    sub.choices["audience"].add_argument("--subjects", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.command == "decide":
        bench_decide(args.calls)
        return
    with tempfile.TemporaryDirectory(prefix="pledge-bench-") as workdir:
        settings = bench_settings(Path(workdir), args.database_url, args.keystore_url)
        if args.command == "writes":
            bench_writes(settings, args.per_client)
        else:
            bench_audience(settings, args.subjects)


if __name__ == "__main__":
    main()
