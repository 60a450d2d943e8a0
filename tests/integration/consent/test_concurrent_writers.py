"""Two writers on one PostgreSQL database at once, each with its own connections (as two server
processes would be): a check made before writing reads a state no other writer is changing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from pledge.consent import Action, ChoiceToRecord, ConsentLedger, Method, RepromptBlocked
from pledge.consent.service import _Deciding, _Recording
from pledge.db import session_factory
from pledge.migrations import upgrade_database
from pledge.policy import load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.vault import PersonalDataScanner, Source, Submission, Vault
from tests.conftest import REFERENCE_POLICY, FreshDatabases, test_settings
from tests.people import screened

pytestmark = pytest.mark.postgresql

SHARING = "marketing.advertising.third_party.targeted"
WAIT = 30.0


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[Runtime, str]]:
    """A migrated PostgreSQL database of the test's own, the reference policy in force, and
    one person in the vault."""
    databases = FreshDatabases("postgresql", tmp_path)
    try:
        settings = test_settings(
            databases.new(), keystore_url=databases.new(), master_key_file=tmp_path / "m.key"
        )
        with Runtime.build(settings) as runtime:
            upgrade_database(runtime.engine)
            publish_policy(
                runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests"
            )
            vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
            (person,) = vault.collect(
                screened(
                    vault,
                    Submission("newsletter", {"email": "two.tabs@example.com"}, Source.WEB_FORM),
                ),
                actor="tests",
            )
            yield runtime, person.subject_id
    finally:
        databases.drop_all()


def choice(subject_id: str, action: Action, *, prompted: bool = False) -> ChoiceToRecord:
    return ChoiceToRecord(
        subject_id, SHARING, action, Method.FORM_CHECKBOX, "tests", "e" * 64, None, prompted
    )


def paused_before_commit(engine: Engine) -> tuple[threading.Event, threading.Event]:
    """Make the next transaction of `engine` (a second process's) stop right before it
    commits, holding its locks, until released: (stopped there, release)."""
    stopped, release = threading.Event(), threading.Event()

    def hold(_connection: object) -> None:
        if not stopped.is_set():
            stopped.set()
            assert release.wait(WAIT)

    event.listen(engine, "commit", hold)
    return stopped, release


def wait_until_blocked(engine: Engine, count: int = 1) -> None:
    """Wait until `count` sessions of the database wait for a row lock."""
    deadline = time.monotonic() + WAIT
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting >= count:
                return
            connection.rollback()
            time.sleep(0.02)
    pytest.fail("the second writer never waited for the first one's lock")


def test_a_prompted_opt_in_batched_during_an_opt_out_waits_for_it_and_is_then_refused(
    database: tuple[Runtime, str],
) -> None:
    runtime, person = database
    other_process = create_engine(runtime.engine.url)
    try:
        opting_out = ConsentLedger(session_factory(other_process))
        prompting = ConsentLedger(runtime.sessions)
        stopped, release = paused_before_commit(other_process)
        opt_out: Future[list[int]] = Future()

        def withdraw() -> None:
            try:
                opt_out.set_result(opting_out.record([choice(person, Action.WITHDRAW)], actor="a"))
            except Exception as error:  # noqa: BLE001 - handed to the test's thread
                opt_out.set_exception(error)

        threading.Thread(target=withdraw).start()
        assert stopped.wait(WAIT)  # the opt-out is written, locked, not yet committed
        prompted = prompting._writer.submit(
            _Recording((choice(person, Action.GRANT, prompted=True),), "banner")
        )
        wait_until_blocked(runtime.engine)
        release.set()
        assert len(opt_out.result(WAIT)) == 1
        # The check ran after the opt-out committed, so it saw it: 12 months of no re-prompt.
        with pytest.raises(RepromptBlocked):
            prompted.result(WAIT)
        assert [e.action for e in prompting.history(person)] == [Action.WITHDRAW]
        assert prompting.verify() is None
        prompting.close()
    finally:
        other_process.dispose()


def test_a_prompted_opt_in_recorded_during_an_opt_out_waits_for_it_and_is_then_refused(
    database: tuple[Runtime, str],
) -> None:
    runtime, person = database
    other_process = create_engine(runtime.engine.url)
    try:
        opting_out = ConsentLedger(session_factory(other_process))
        prompting = ConsentLedger(runtime.sessions)
        stopped, release = paused_before_commit(other_process)
        withdrawal = [choice(person, Action.WITHDRAW)]
        threading.Thread(
            target=opting_out.record, args=(withdrawal,), kwargs={"actor": "a"}
        ).start()
        assert stopped.wait(WAIT)
        prompted: Future[list[int]] = Future()

        def prompt() -> None:
            try:
                grant = choice(person, Action.GRANT, prompted=True)
                prompted.set_result(prompting.record([grant], actor="banner"))
            except Exception as error:  # noqa: BLE001 - handed to the test's thread
                prompted.set_exception(error)

        threading.Thread(target=prompt).start()
        wait_until_blocked(runtime.engine)
        release.set()
        with pytest.raises(RepromptBlocked):
            prompted.result(WAIT)
        assert [e.action for e in prompting.history(person)] == [Action.WITHDRAW]
    finally:
        other_process.dispose()


def test_a_lock_timeout_fails_the_whole_batch_once_each_caller_with_its_own_error(
    database: tuple[Runtime, str],
) -> None:
    runtime, person = database
    impatient = create_engine(runtime.engine.url, connect_args={"options": "-c lock_timeout=200"})
    try:
        ledger = ConsentLedger(session_factory(impatient))
        sizes: list[int] = []
        run = ledger._writer.run_batch

        def counted(batch: Sequence[_Recording | _Deciding]) -> Sequence[object]:
            sizes.append(len(batch))
            return run(batch)

        ledger._writer.run_batch = counted
        with runtime.engine.connect() as holder, holder.begin():
            holder.execute(text("SELECT * FROM consent_head FOR UPDATE"))  # another writer
            futures = ledger._writer.submit_many(
                [_Recording((choice(person, a),), "crm") for a in [Action.GRANT] * 5]
            )
            errors = [future.exception(WAIT) for future in futures]
        assert all(isinstance(error, OperationalError) for error in errors)
        assert all("lock timeout" in str(error) for error in errors)
        assert len({id(error) for error in errors}) == 5
        assert sizes == [5], "a lock timeout is no item's fault: nothing runs again"
        ledger.close()
    finally:
        impatient.dispose()
