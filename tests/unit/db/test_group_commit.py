"""Group commit: concurrent items share a transaction, are answered only once it has committed,
and a bad item never fails the others. A fake `run_batch` stands in for the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from pledge.db import GroupCommit

WAIT = 10.0
"""Longest a test waits for the writer thread (it should take microseconds)."""


class Refused(ValueError):
    """An item's own refusal, as a check inside a batch raises it."""


class FakeDatabase:
    """Runs batches as `GroupCommit` asks; what a batch commits becomes `committed`."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.committed: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def run_batch(self, batch: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(batch))
        self.entered.set()
        assert self.gate.wait(WAIT)
        if "breaks the transaction" in batch:
            raise RuntimeError("constraint violated: the whole transaction rolls back")
        if "commit fails" in batch:
            return [OSError("disk I/O error at commit")] * len(batch)
        outcomes: list[str | Exception] = []
        for item in batch:
            if item.startswith("refused"):
                outcomes.append(Refused(item))
            else:
                outcomes.append(item.upper())
        self.committed += [item for item in batch if not item.startswith("refused")]
        return outcomes


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def writer(database: FakeDatabase) -> GroupCommit[str, str]:
    return GroupCommit(database.run_batch, name="test-group-commit", idle=0.2)


def test_items_waiting_while_a_batch_commits_share_the_next_batch(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    database.gate.clear()
    first = writer.submit("first")
    assert database.entered.wait(WAIT)
    waiting = [writer.submit(f"item {i}") for i in range(5)]
    time.sleep(0.05)
    assert not any(f.done() for f in [first, *waiting])  # nothing answered before its commit
    database.gate.set()
    assert [f.result(WAIT) for f in waiting] == [f"ITEM {i}" for i in range(5)]
    assert first.result(WAIT) == "FIRST"
    assert database.batches == [["first"], [f"item {i}" for i in range(5)]]


def test_an_item_refused_inside_a_batch_fails_alone(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    good, refused, other = writer.submit_many(["good", "refused: unknown subject", "other"])
    assert good.result(WAIT) == "GOOD"
    assert other.result(WAIT) == "OTHER"
    with pytest.raises(Refused):
        refused.result(WAIT)
    assert database.batches == [["good", "refused: unknown subject", "other"]]


def test_a_batch_that_fails_runs_again_item_by_item_so_only_the_bad_item_fails(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    futures = writer.submit_many(["a", "breaks the transaction", "b"])
    assert futures[0].result(WAIT) == "A"
    assert futures[2].result(WAIT) == "B"
    with pytest.raises(RuntimeError, match="constraint violated"):
        futures[1].result(WAIT)
    assert database.batches == [
        ["a", "breaks the transaction", "b"],
        ["a"],
        ["breaks the transaction"],
        ["b"],
    ]
    assert database.committed == ["a", "b"]  # each once: the failed batch committed nothing


def test_a_commit_whose_outcome_is_unknown_fails_every_item_and_retries_none(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    futures = writer.submit_many(["a", "commit fails", "b"])
    for future in futures:
        with pytest.raises(OSError, match="disk I/O error"):
            future.result(WAIT)
    assert database.batches == [["a", "commit fails", "b"]]  # no second attempt: no duplicate


def test_an_item_cancelled_before_its_batch_starts_is_left_out(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    database.gate.clear()
    first = writer.submit("first")
    assert database.entered.wait(WAIT)
    gone, kept = writer.submit_many(["gone", "kept"])
    assert gone.cancel()
    database.gate.set()
    assert kept.result(WAIT) == "KEPT"
    assert first.result(WAIT) == "FIRST"
    assert database.batches == [["first"], ["kept"]]


def test_the_writer_thread_ends_when_idle_and_starts_again_on_the_next_item(
    writer: GroupCommit[str, str],
) -> None:
    assert writer.submit("before").result(WAIT) == "BEFORE"
    deadline = time.monotonic() + WAIT
    while _writer_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _writer_threads()
    assert writer.submit("after").result(WAIT) == "AFTER"


def test_no_batch_is_larger_than_max_batch(database: FakeDatabase) -> None:
    writer: GroupCommit[str, str] = GroupCommit(database.run_batch, name="small", max_batch=2)
    futures = writer.submit_many(["a", "b", "c"])
    assert [f.result(WAIT) for f in futures] == ["A", "B", "C"]
    assert database.batches == [["a", "b"], ["c"]]


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-group-commit"]
