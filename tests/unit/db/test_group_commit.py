"""Group commit: concurrent items share a transaction, are answered only once it has committed,
and a bad item never fails the others. A fake `run_batch` stands in for the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import OperationalError

from pledge.db import BatchFailed, GroupCommit, GroupCommitClosed

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
        if "lock timeout" in batch:
            error = Exception("canceling statement due to lock timeout")
            raise OperationalError("UPDATE consent_head", {}, error)
        if "no policy" in batch:
            raise BatchFailed("the batch could not start") from LookupError("no policy in force")
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


def test_a_batch_that_fails_runs_again_in_halves_so_only_the_bad_item_fails(
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
        ["breaks the transaction", "b"],
        ["breaks the transaction"],
        ["b"],
    ]
    assert database.committed == ["a", "b"]  # each once: the failed batch committed nothing


def test_one_bad_item_among_sixteen_is_found_by_bisection_not_sixteen_retries(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    items = [f"item {i}" for i in range(16)]
    items[11] = "breaks the transaction"
    futures = writer.submit_many(items)
    for index, future in enumerate(futures):
        if index == 11:
            with pytest.raises(RuntimeError, match="constraint violated"):
                future.result(WAIT)
        else:
            assert future.result(WAIT) == f"ITEM {index}"
    # The batch, then two halves at each of four levels: 9 batches, not 1 + 16.
    assert [len(b) for b in database.batches] == [16, 8, 8, 4, 2, 2, 1, 1, 4]
    assert database.committed == [item for item in items if item != "breaks the transaction"]


@pytest.mark.parametrize(
    ("failing", "kind", "message"),
    [
        ("lock timeout", OperationalError, "lock timeout"),
        ("no policy", LookupError, "no policy in force"),
    ],
)
def test_a_failure_that_is_no_items_fails_the_whole_batch_without_running_it_again(
    database: FakeDatabase,
    writer: GroupCommit[str, str],
    failing: str,
    kind: type[Exception],
    message: str,
) -> None:
    futures = writer.submit_many(["a", failing, "b", "c"])
    for future in futures:
        with pytest.raises(kind, match=message):
            future.result(WAIT)
    assert database.batches == [["a", failing, "b", "c"]]  # once: no retries, alone or halved
    assert database.committed == []


@pytest.mark.parametrize("failing", ["lock timeout", "no policy", "commit fails"])
def test_each_waiting_caller_gets_an_exception_of_its_own(
    writer: GroupCommit[str, str], failing: str
) -> None:
    futures = writer.submit_many([failing, "a", "b"])
    errors = [future.exception(WAIT) for future in futures]
    assert all(error is not None for error in errors)
    assert len({id(error) for error in errors}) == 3, "one instance shared by three callers"
    assert len({type(error) for error in errors}) == 1
    assert len({error.args for error in errors if error is not None}) == 1
    causes = {id(error.__cause__) for error in errors if error is not None}
    assert len(causes) == 1  # each copy points at the one failure the writer met
    assert None not in {error.__cause__ for error in errors if error is not None}


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


def test_closing_commits_what_waits_then_refuses_new_items(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    database.gate.clear()
    first = writer.submit("first")
    assert database.entered.wait(WAIT)
    waiting = writer.submit_many(["a", "b"])
    threading.Timer(0.2, database.gate.set).start()
    assert writer.close(timeout=WAIT) == 0
    assert [f.result(0) for f in [first, *waiting]] == ["FIRST", "A", "B"]  # done at close
    assert database.committed == ["first", "a", "b"]
    with pytest.raises(GroupCommitClosed):
        writer.submit("late")
    assert writer._thread is not None
    assert not writer._thread.is_alive()


def test_closing_fails_with_a_clear_error_what_cannot_be_committed_in_time(
    database: FakeDatabase, writer: GroupCommit[str, str]
) -> None:
    database.gate.clear()
    first = writer.submit("first")
    assert database.entered.wait(WAIT)
    waiting = writer.submit_many(["a", "b"])
    assert writer.close(timeout=0.1) == 2
    for future in waiting:
        with pytest.raises(GroupCommitClosed, match="shut down before this item was committed"):
            future.result(0)
    database.gate.set()
    assert first.result(WAIT) == "FIRST"  # the batch running at close goes on to its end
    assert database.batches == [["first"]]


def test_no_batch_is_larger_than_max_batch(database: FakeDatabase) -> None:
    writer: GroupCommit[str, str] = GroupCommit(database.run_batch, name="small", max_batch=2)
    futures = writer.submit_many(["a", "b", "c"])
    assert [f.result(WAIT) for f in futures] == ["A", "B", "C"]
    assert database.batches == [["a", "b"], ["c"]]


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-group-commit"]
