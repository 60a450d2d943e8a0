"""Consent benchmarks: decisions, consent writes and decisions over HTTP with 1 and 8 clients,
the audience filter, and the floor of any FastAPI route on this machine.

    .venv/bin/python bench/consent_bench.py decide
    .venv/bin/python bench/consent_bench.py writes [--database-url URL --keystore-url URL]
        [--serve="--workers 2"] [--requests 4000]
    .venv/bin/python bench/consent_bench.py batches [--batch 1000] [--database-url ...]
    .venv/bin/python bench/consent_bench.py audience --subjects 1000000 [--database-url ...]
    .venv/bin/python bench/consent_bench.py floor
    .venv/bin/python bench/consent_bench.py bodies

Each HTTP run starts its own `pledge serve` (see vault_bench.py) on a fresh database; `floor`
starts uvicorn on a route with Pledge's decision models and no work at all.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import httpx2 as httpx
from fastapi import Depends, FastAPI, Response
from sqlalchemy import insert
from vault_bench import REFERENCE, bench_settings, free_port, prepared, report, server

from pledge.config import Settings
from pledge.consent import Choice, DecisionTable, Method
from pledge.consent.routes import (
    DecisionIn,
    DecisionItemOut,
    DecisionOut,
    DecisionsIn,
    DecisionsOut,
)
from pledge.consent.tables import ConsentChoice
from pledge.policy import load_policy_file
from pledge.runtime import Runtime
from pledge.vault.tables import Subject
from pledge.web.bodies import JsonBody, json_answer

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
    screened = client.post(
        "/v1/age-screen",
        json={"collection_point": "newsletter", "date_of_birth": "1990-04-01"},
        headers=headers,
    )
    screened.raise_for_status()
    items = [
        {
            "collection_point": "newsletter",
            "fields": {"email": f"w{i}-{uuid.uuid4().hex[:6]}@bench.example"},
            "age_pass": screened.json()["age_pass"],
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


def clients(
    base: str, token: str, loads: list[list[tuple[str, bytes]]]
) -> tuple[float, list[float]]:
    """Run one client thread per load, each posting its (path, JSON body) requests one after
    another on a keep-alive connection; the requests per second and every latency.

    The client is the standard library's `http.client` with bodies encoded beforehand: it costs
    about 0.13 ms of CPU per request here, where httpx costs about 0.5 ms, and the client shares
    the two cores with the server, so a heavy client would measure itself.
    """
    address = urlsplit(base)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    failures: list[str] = []

    def run(load: list[tuple[str, bytes]]) -> None:
        connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
        try:
            for path, body in load:
                t = time.perf_counter()
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                latencies.append(time.perf_counter() - t)
                if response.status >= 300:
                    failures.append(f"{path}: {response.status} {answer[:200]!r}")
                    return
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(load,)) for load in loads]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    return len(latencies) / elapsed, latencies


def writes_to(subjects: list[str], count: int, offset: int = 0) -> list[tuple[str, bytes]]:
    """`count` consent writes, alternately grants and withdrawals, over `subjects` in turn."""
    return [
        (
            f"/v1/subjects/{subjects[(offset + i) % len(subjects)]}/consent",
            json.dumps(
                {
                    "purpose": EMAIL,
                    "action": "grant" if i % 2 == 0 else "withdraw",
                    "method": "form_checkbox",
                    "source": "bench",
                    "notice_sha256": NOTICE,
                }
            ).encode(),
        )
        for i in range(count)
    ]


def decisions_on(subjects: list[str], count: int) -> list[tuple[str, bytes]]:
    """`count` decisions on random subjects among `subjects`."""
    return [
        (
            "/v1/decisions",
            json.dumps(
                {"subject_id": s, "purpose": EMAIL, "categories": ["user.contact.email"]}
            ).encode(),
        )
        for s in random.choices(subjects, k=count)
    ]


def bench_writes(settings: Settings, requests: int, server_options: list[str]) -> None:
    """Consent writes and decisions per second over HTTP, with 1 and 8 clients."""
    token = prepared(settings, "collect", "consent:write", "decide")
    headers = {"Authorization": f"Bearer {token}"}
    with (
        server(settings, *server_options) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        subjects = subjects_over_http(client, headers, 2000)
        clients(base, token, [writes_to(subjects, 200, 100 * c) for c in range(8)])  # warm up
        clients(base, token, [decisions_on(subjects, 200) for _ in range(8)])
        for count in (1, 8):
            share = requests // count  # each client starts at another subject
            loads = [writes_to(subjects, share, 250 * c) for c in range(count)]
            measure(f"consent writes over HTTP, {count} client(s)", base, token, loads)
        for count in (1, 8):
            loads = [decisions_on(subjects, requests // count) for _ in range(count)]
            measure(f"decisions over HTTP, {count} client(s)", base, token, loads)


def write_batches(
    subjects: list[str], batches: int, size: int, offset: int
) -> list[tuple[str, bytes]]:
    """`batches` calls of `POST /v1/consent/batch`, each `size` writes, alternately grants and
    withdrawals, over `subjects` in turn from `offset`."""
    calls = []
    for b in range(batches):
        first = offset + b * size
        items = [
            {
                "subject_id": subjects[(first + i) % len(subjects)],
                "purpose": EMAIL,
                "action": "grant" if i % 2 == 0 else "withdraw",
                "method": "form_checkbox",
                "source": "bench",
                "notice_sha256": NOTICE,
            }
            for i in range(size)
        ]
        calls.append(("/v1/consent/batch", json.dumps({"items": items}).encode()))
    return calls


def decision_batches(subjects: list[str], batches: int, size: int) -> list[tuple[str, bytes]]:
    """`batches` calls of `POST /v1/decisions/batch`, each `size` decisions."""
    return [
        (
            "/v1/decisions/batch",
            json.dumps(
                {"items": [json.loads(body) for _, body in decisions_on(subjects, size)]}
            ).encode(),
        )
        for _ in range(batches)
    ]


def bench_batches(settings: Settings, size: int, items: int, server_options: list[str]) -> None:
    """Consent writes and decisions per second over HTTP through the batch calls, with 1 and 8
    clients: `items` writes (or decisions) in calls of `size`."""
    token = prepared(settings, "collect", "consent:write", "decide")
    headers = {"Authorization": f"Bearer {token}"}
    with (
        server(settings, *server_options) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        subjects = subjects_over_http(client, headers, 20_000)
        clients(base, token, [write_batches(subjects, 2, size, 7_000 * c) for c in range(8)])
        clients(base, token, [decision_batches(subjects, 2, size) for _ in range(8)])
        for count in (1, 8):
            calls = max(1, items // size // count)
            loads = [write_batches(subjects, calls, size, 2_500 * c) for c in range(count)]
            measure_items(
                f"consent writes in batches of {size}, {count} client(s)", base, token, loads, size
            )
        for count in (1, 8):
            calls = max(1, items // size // count)
            loads = [decision_batches(subjects, calls, size) for _ in range(count)]
            measure_items(
                f"decisions in batches of {size}, {count} client(s)", base, token, loads, size
            )


def measure_items(
    title: str, base: str, token: str, loads: list[list[tuple[str, bytes]]], size: int
) -> None:
    rate, latencies = clients(base, token, loads)
    print(f"{title}: {rate * size:.0f} per second ({rate:.1f} calls/s)")
    report("  latency of a call", latencies)


def measure(title: str, base: str, token: str, loads: list[list[tuple[str, bytes]]]) -> None:
    rate, latencies = clients(base, token, loads)
    print(f"{title}: {rate:.0f}/s")
    report("  latency", latencies)


def floor_app() -> FastAPI:
    """The least a decision can cost over HTTP here: Pledge's request and answer models on
    FastAPI and uvicorn, and nothing else (no API key, no database, no audit entry)."""
    app = FastAPI()

    @app.post("/v1/decisions")
    async def decide(body: DecisionIn) -> DecisionOut:
        return DecisionOut(allowed=True, reasons=[f"floor: {body.purpose}"], gpc_honored=False)

    return app


def bench_floor(requests: int) -> None:
    """Requests per second of `floor_app`, with the same clients as `writes`."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "consent_bench:floor_app"]
    options = ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen([*command, *options], cwd=Path(__file__).parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/docs", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        subjects = [str(uuid.uuid4()) for _ in range(100)]
        clients(base, "none", [decisions_on(subjects, 200) for _ in range(8)])  # warm up
        for count in (1, 8):
            loads = [decisions_on(subjects, requests // count) for _ in range(count)]
            measure(f"the floor (no database) over HTTP, {count} client(s)", base, "none", loads)
    finally:
        process.terminate()
        process.wait(timeout=30)


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


def bodies_app(*, declared: bool) -> FastAPI:
    """A batch of 1,000 decisions answered without any work, its body and answer handled as
    FastAPI handles a declared body and answer (`declared`), or as Pledge's batch endpoints
    handle them (`pledge.web.bodies`)."""
    app = FastAPI()
    reasons = ["consent: granted on 2026-12-03 by form_checkbox", "basis: consent"]
    if declared:

        @app.post("/batch")
        async def declared_batch(body: DecisionsIn) -> DecisionsOut:
            return DecisionsOut(
                decisions=[DecisionItemOut(allowed=True, reasons=reasons) for _ in body.items]
            )

    else:

        @app.post("/batch", response_model=DecisionsOut)
        async def pledge_batch(
            body: Annotated[DecisionsIn, Depends(JsonBody(DecisionsIn))],
        ) -> Response:
            return json_answer(
                {"decisions": [{"allowed": True, "reasons": reasons} for _ in body.items]}
            )

    return app


def bench_bodies(calls: int) -> None:
    """CPU time per call of 1,000 decisions in `bodies_app`, both ways, in process."""
    subjects = [str(uuid.uuid4()) for _ in range(1000)]
    body = json.dumps({"items": [json.loads(b) for _, b in decisions_on(subjects, 1000)]})

    async def run(app: FastAPI) -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            headers = {"Content-Type": "application/json"}
            for _ in range(5):
                (await client.post("/batch", content=body, headers=headers)).raise_for_status()
            started = time.process_time()
            for _ in range(calls):
                await client.post("/batch", content=body, headers=headers)
            return (time.process_time() - started) / calls

    for declared in (True, False):
        way = "declared body and answer (FastAPI)" if declared else "pledge.web.bodies"
        cost = asyncio.run(run(bodies_app(declared=declared)))
        print(f"a call of 1,000 decisions, {way}: {cost * 1000:.1f} ms of CPU")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    decide = sub.add_parser("decide")
    decide.add_argument("--calls", type=int, default=200_000)
    sub.add_parser("floor").add_argument("--requests", type=int, default=4000)
    sub.add_parser("bodies").add_argument("--calls", type=int, default=200)
    for name in ("writes", "batches", "audience"):
        p = sub.add_parser(name)
        p.add_argument("--database-url")
        p.add_argument("--keystore-url")
    sub.choices["writes"].add_argument(
        "--requests", type=int, default=4000, help="requests per measurement, over all clients"
    )
    sub.choices["writes"].add_argument(
        "--serve",
        default="",
        help="options for `pledge serve`, in one string (e.g. '--workers 2')",
    )
    sub.choices["batches"].add_argument("--batch", type=int, default=1000, help="items per call")
    sub.choices["batches"].add_argument(
        "--items", type=int, default=40_000, help="items per measurement, over all clients"
    )
    sub.choices["batches"].add_argument("--serve", default="", help="as for `writes`")
    sub.choices["audience"].add_argument("--subjects", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.command == "decide":
        bench_decide(args.calls)
        return
    if args.command == "floor":
        bench_floor(args.requests)
        return
    if args.command == "bodies":
        bench_bodies(args.calls)
        return
    with tempfile.TemporaryDirectory(prefix="pledge-bench-") as workdir:
        settings = bench_settings(Path(workdir), args.database_url, args.keystore_url)
        if args.command == "writes":
            bench_writes(settings, args.requests, args.serve.split())
        elif args.command == "batches":
            bench_batches(settings, args.batch, args.items, args.serve.split())
        else:
            bench_audience(settings, args.subjects)


if __name__ == "__main__":
    main()
