"""Consent use cases: record a choice, read the choices, decide, verify and rebuild. (The
cookie banner's visitors, whose choices the same ledger keeps, are in `visitors.py`.)"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import (
    Act,
    advance_chain,
    audited_since,
    audited_up_to,
    lock_chain,
    record_many,
    reserve_chain,
)
from pledge.consent.rules import (
    Action,
    Choice,
    ConsentEvent,
    Decision,
    DecisionTable,
    Method,
    audience_filter,
    event_hash,
    first_break,
    fold,
    reprompt_blocked_until,
)
from pledge.consent.tables import ConsentChoice, ConsentEventRow, ConsentHead, ConsentVisitor
from pledge.db import BatchFailed, GroupCommit, reading
from pledge.policy import LoadedPolicy, policy_in_force
from pledge.policy.ages import AgeBand
from pledge.policy.document import GpcAnswer, LegalBasis
from pledge.vault import (
    NoPolicyInForce,
    SubjectErased,
    SubjectNotFound,
    SubjectState,
    UnknownPurpose,
    all_live_subjects,
    check_live_subject,
    erased_subjects,
    live_subjects,
    restricted_subjects,
    subject_states,
)


class ConsentRefused(ValueError):
    """The choice cannot be recorded (e.g. a purpose that needs no consent)."""


class RepromptBlocked(ValueError):
    """An opt-in Pledge prompted for, within 12 months of an opt-out of sale or sharing."""


class ChoiceRefusedAt(ValueError):
    """One of several choices recorded together was refused, so none of them was: `index` is
    its position, `refusal` why (`UnknownPurpose`, `ConsentRefused`, `RepromptBlocked`,
    `SubjectNotFound`, `SubjectErased`)."""

    def __init__(self, index: int, refusal: Exception) -> None:
        super().__init__(index, refusal)

    @property
    def index(self) -> int:
        """The refused choice's position among those submitted."""
        return cast("int", self.args[0])

    @property
    def refusal(self) -> Exception:
        """Why it was refused."""
        return cast("Exception", self.args[1])

    def __str__(self) -> str:
        return f"choice {self.index}: {self.refusal}"


NO_NOTICE = "0" * 64
"""The notice digest of a Global Privacy Control signal, which is shown no notice."""


@dataclass(frozen=True)
class ChoiceToRecord:
    """A grant or withdrawal as a caller submits it."""

    subject_id: str
    purpose: str
    action: Action
    method: Method
    source: str
    notice_sha256: str
    expires_at: dt.datetime | None = None
    prompted_by_pledge: bool = False


_tables: dict[str, DecisionTable] = {}
"""Decision tables compiled once per policy version (by content hash) in each process."""


class ConsentLedger:
    """The append-only ledger of consent, its current state, and the decisions made from it."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._writer = GroupCommit(self._commit_batch, name="consent-group-commit")

    def record(
        self, choices: Sequence[ChoiceToRecord], *, actor: str, now: dt.datetime | None = None
    ) -> list[int]:
        """Append choices to the ledger and update the current state, in one transaction."""
        if not choices:
            return []
        now = now or dt.datetime.now(dt.UTC)
        policy = self._policy()
        with self.sessions() as session, session.begin():
            return self.record_in(session, policy, choices, actor=actor, now=now)

    def withdraw(
        self,
        subject_id: str,
        purposes: Sequence[str],
        *,
        method: Method,
        source: str,
        notice_sha256: str,
        actor: str,
    ) -> list[int]:
        """Withdraw each of `purposes` that the person has not withdrawn already, in one
        transaction; the seqs recorded. The current state is read under the ledger's lock, so
        the same withdrawal asked several times at once (a link clicked twice) is recorded once,
        and asked again later records nothing."""
        now = dt.datetime.now(dt.UTC)
        policy = self._policy()
        with self.sessions() as session, session.begin():
            lock_chain(session, ConsentHead)
            current = current_choices(session, subject_id)
            to_withdraw = [
                purpose
                for purpose in dict.fromkeys(purposes)
                if purpose not in current or current[purpose].granted
            ]
            if not to_withdraw:
                return []
            choices = [
                ChoiceToRecord(subject_id, purpose, Action.WITHDRAW, method, source, notice_sha256)
                for purpose in to_withdraw
            ]
            return self.record_in(session, policy, choices, actor=actor, now=now)

    def record_in(
        self,
        session: Session,
        policy: LoadedPolicy,
        choices: Sequence[ChoiceToRecord],
        *,
        actor: str,
        now: dt.datetime,
    ) -> list[int]:
        """`record`, in the caller's transaction, under `policy` (the one in force)."""
        # The ledger's head is locked before any check reads the state the choices change.
        lock_chain(session, ConsentHead)
        events = [self._checked(session, policy, choice, now) for choice in choices]
        seqs = self._append(session, events)
        record_many(session, _recorded_acts(actor, events, seqs), now=now)
        return seqs

    def _checked(
        self,
        session: Session,
        policy: LoadedPolicy,
        choice: ChoiceToRecord,
        now: dt.datetime,
        *,
        chooser: tuple[bool, SubjectState | None] | None = None,
        earlier: Sequence[ConsentEvent] = (),
    ) -> ConsentEvent:
        """The event to append for `choice`, or its refusal. `chooser`: what `_check_chooser`
        says of the person, when it was read already; `earlier`: the events checked before it
        in the same call, not appended yet (a withdrawal there blocks a prompted grant)."""
        visitor, state = chooser or _check_chooser(session, choice.subject_id)
        purpose = policy.document.purposes.get(choice.purpose)
        if purpose is None:
            raise UnknownPurpose(choice.purpose)
        if state is not None and choice.action is Action.GRANT:
            if state.frozen:
                raise ConsentRefused(
                    "this person is a child found without a parent's consent: nothing can be "
                    "granted until a parent consents"
                )
            if state.age_band is AgeBand.CHILD and choice.method is not Method.PARENT:
                raise ConsentRefused("this person is under 13: only a parent can grant consent")
        if visitor:
            rule = self._table(policy).visitor_rules.get(choice.purpose)
            if rule is None:
                raise ConsentRefused(
                    f"'{choice.purpose}' is not a purpose of a cookie category: a cookie-banner "
                    "visitor can choose only those"
                )
            if rule.basis not in {LegalBasis.CONSENT, LegalBasis.OPT_OUT}:
                raise ConsentRefused(
                    f"'{choice.purpose}' is strictly necessary for the site: it asks for no consent"
                )
        elif purpose.legal_basis not in {LegalBasis.CONSENT, LegalBasis.OPT_OUT}:
            raise ConsentRefused(
                f"'{choice.purpose}' rests on {purpose.legal_basis.value}: it asks for no consent"
            )
        if choice.action is Action.GRANT and choice.prompted_by_pledge:
            history = events_of(session, choice.subject_id) + [
                e for e in earlier if e.subject_id == choice.subject_id
            ]
            until = reprompt_blocked_until(history, choice.purpose, purpose.sale or purpose.sharing)
            if until is not None and now < until:
                raise RepromptBlocked(
                    f"the person opted out of '{choice.purpose}'; Pledge may not prompt them to "
                    f"opt back in before {until:%Y-%m-%d}"
                )
        return ConsentEvent(
            seq=0,
            subject_id=choice.subject_id,
            purpose=choice.purpose,
            action=choice.action,
            method=choice.method,
            source=choice.source,
            notice_sha256=choice.notice_sha256,
            policy_version=policy.document.version,
            at=now,
            expires_at=choice.expires_at,
            prompted_by_pledge=choice.prompted_by_pledge,
        )

    def _checked_all(
        self,
        session: Session,
        policy: LoadedPolicy,
        choices: Sequence[ChoiceToRecord],
        now: dt.datetime,
        *,
        located: bool = False,
    ) -> list[ConsentEvent]:
        """Each choice checked; of several (or when `located`), a refused one raises
        `ChoiceRefusedAt`."""
        if len(choices) == 1 and not located:
            return [self._checked(session, policy, choices[0], now)]
        choosers = _choosers(session, [choice.subject_id for choice in choices])
        checked: list[ConsentEvent] = []
        for index, choice in enumerate(choices):
            try:
                chooser = choosers.get(choice.subject_id)
                if chooser is None:
                    raise SubjectNotFound(choice.subject_id)
                if isinstance(chooser, Exception):
                    raise chooser
                checked.append(
                    self._checked(session, policy, choice, now, chooser=chooser, earlier=checked)
                )
            except (ValueError, LookupError) as refused:
                raise ChoiceRefusedAt(index, refused) from refused
        return checked

    def _append(self, session: Session, events: list[ConsentEvent]) -> list[int]:
        seq, prev = reserve_chain(session, ConsentHead, len(events))
        rows, seqs = [], []
        latest: dict[tuple[str, str], ConsentEvent] = {}
        for offset, event in enumerate(events):
            numbered = ConsentEvent(**{**event.__dict__, "seq": seq + offset})
            digest = event_hash(numbered, prev)
            rows.append({**_columns(numbered), "prev_hash": prev, "hash": digest})
            seqs.append(numbered.seq)
            latest[numbered.subject_id, numbered.purpose] = numbered
            prev = digest
        session.execute(_INSERT_EVENTS, rows)
        self._remember(session, list(latest.values()))
        advance_chain(session, ConsentHead, prev)
        return seqs

    def _remember(self, session: Session, events: list[ConsentEvent]) -> None:
        """Make each event the current choice of its subject and purpose (one event per pair)."""
        session.execute(
            _FORGET_CHOICE,
            [{"forget_subject": e.subject_id, "forget_purpose": e.purpose} for e in events],
        )
        session.execute(
            _INSERT_CHOICE,
            [
                {
                    "subject_id": e.subject_id,
                    "purpose": e.purpose,
                    "granted": e.action is Action.GRANT,
                    "seq": e.seq,
                    "at": e.at,
                    "method": e.method.value,
                    "expires_at": e.expires_at,
                }
                for e in events
            ],
        )

    def consent_record(
        self, subject_id: str, *, actor: str
    ) -> tuple[dict[str, Choice], list[ConsentEvent]]:
        """The subject's current choices and full history, for a reader; checked and audited."""
        with self.sessions() as session, session.begin():
            _check_chooser(session, subject_id)
            record_many(session, [Act(actor, "consent.read", subject_id, None, {})])
            return current_choices(session, subject_id), events_of(session, subject_id)

    def gpc_is_honored(self) -> bool:
        """Whether the policy in force answers Global Privacy Control with an opt-out."""
        signal = self._policy().document.signals.global_privacy_control
        return signal is GpcAnswer.OPT_OUT_OF_SALE_AND_SHARING

    def choices(self, subject_id: str) -> dict[str, Choice]:
        """The subject's current choice per purpose (from the state the ledger keeps)."""
        with self.sessions() as session:
            return current_choices(session, subject_id)

    def history(self, subject_id: str) -> list[ConsentEvent]:
        """Every consent event of the subject, oldest first."""
        with self.sessions() as session:
            return events_of(session, subject_id)

    def decide(
        self,
        subject_id: str,
        purpose: str,
        categories: Sequence[str],
        *,
        actor: str,
        recipient: str | None = None,
        gpc: bool = False,
        now: dt.datetime | None = None,
    ) -> Decision:
        """May this subject's data in `categories` be used for `purpose`? Audited."""
        now = now or dt.datetime.now(dt.UTC)
        table = self._table(self._policy())
        with self.sessions() as session, session.begin():
            decision, act = _decided(
                session,
                table,
                _Deciding(subject_id, purpose, tuple(categories), actor, recipient),
                gpc=gpc,
                now=now,
            )
            record_many(session, [act], now=now)
        return decision

    async def arecord(
        self, choices: Sequence[ChoiceToRecord], *, actor: str, located: bool = False
    ) -> list[int]:
        """`record`, for the event loop: the choices join the next batch of concurrent calls
        (`GroupCommit`), and the call returns once that batch has committed. The choices are
        recorded all or none: of several (or with `located`), a refused one raises
        `ChoiceRefusedAt`; a single one raises its refusal itself."""
        recording = _Recording(tuple(choices), actor, located)
        outcome = await asyncio.wrap_future(self._writer.submit(recording))
        return cast("list[int]", outcome)

    async def adecide(
        self,
        subject_id: str,
        purpose: str,
        categories: Sequence[str],
        *,
        actor: str,
        recipient: str | None = None,
    ) -> Decision:
        """`decide` (without Global Privacy Control), for the event loop: the decision and its
        audit entry join the next batch of concurrent calls and return once it has committed."""
        asked = _Deciding(subject_id, purpose, tuple(categories), actor, recipient)
        return cast("Decision", await asyncio.wrap_future(self._writer.submit(asked)))

    def decide_many(
        self,
        questions: Sequence[tuple[str, str, Sequence[str], str | None]],
        *,
        actor: str,
        now: dt.datetime | None = None,
    ) -> list[Decision | SubjectNotFound | SubjectErased]:
        """`decide` for many questions, each (subject ID, purpose, categories, recipient): the
        people's states and choices are read together, in a transaction that does not wait for
        SQLite's writer, each question is decided by the compiled table, and the decisions are
        then audited together, in one transaction, before any answer is given. If anything
        about one of the people was audited in between (a withdrawal, a freeze, an erasure),
        the questions are decided again in the audit's transaction, under the chain's lock:
        the audit log never shows a decision after a change it did not take into account.
        The answers come in order, each a decision or why there is none (an unknown or erased
        person). A purpose the policy does not declare is answered as `decide` answers it:
        not allowed, with that reason."""
        now = now or dt.datetime.now(dt.UTC)
        table = self._table(self._policy())
        with reading(self.sessions) as session:
            seen_up_to = audited_up_to(session)
            answers, acts = _decide_all(session, table, questions, actor=actor, now=now)
        if not acts:
            return answers
        with self.sessions() as session, session.begin():
            if audited_since(session, seen_up_to, [act.subject_id or "" for act in acts]):
                # Someone's choices or state changed since the snapshot: decide again under
                # the lock, so no decision is audited after a change it did not see.
                answers, acts = _decide_all(session, table, questions, actor=actor, now=now)
            record_many(session, acts, now=now)
        return answers

    def close(self, timeout: float = 30.0) -> int:
        """Shut down the group commit of `arecord` and `adecide`: what waits is committed, what
        cannot be within `timeout` seconds fails (`GroupCommitClosed`); how many failed so."""
        return self._writer.close(timeout)

    def _commit_batch(self, batch: Sequence[_Recording | _Deciding]) -> list[object]:
        """Run recordings and decisions in one transaction, in the order submitted; see
        `GroupCommit` for what raising means.

        A batch that records anything first locks the ledger's head, so no other writer changes
        the state its checks read. Failing before any item runs (the policy or the lock out of
        reach) fails the batch (`BatchFailed`). Each item is checked before it writes anything,
        and a refusal (unknown purpose, unknown or erased subject, consent refused, re-prompt
        blocked) is that item's outcome alone. The recordings' events are appended together, and
        all audit entries at the end, in the items' order; an item about a person whose events
        wait is run after they are appended, so every item sees what the earlier ones wrote.
        Every act of the batch has one time.
        """
        now = dt.datetime.now(dt.UTC)
        outcomes: list[object] = [None] * len(batch)
        acts: list[list[Act]] = [[] for _ in batch]
        waiting: list[tuple[int, list[ConsentEvent]]] = []  # checked, not appended yet
        with self.sessions() as session:
            transaction = session.begin()
            try:
                try:
                    policy = self._policy_in(session)
                    table = self._table(policy)
                    if any(isinstance(item, _Recording) for item in batch):
                        lock_chain(session, ConsentHead)
                except Exception as failure:
                    raise BatchFailed("the batch could not start") from failure

                def append_waiting() -> None:
                    events = [event for _, checked in waiting for event in checked]
                    seqs = iter(self._append(session, events) if events else [])
                    for index, checked in waiting:
                        outcomes[index] = numbered = [next(seqs) for _ in checked]
                        acts[index] = _recorded_acts(batch[index].actor, checked, numbered)
                    waiting.clear()

                for index, item in enumerate(batch):
                    if waiting and _people(item) & {e.subject_id for _, c in waiting for e in c}:
                        append_waiting()
                    try:
                        if isinstance(item, _Deciding):
                            outcomes[index], act = _decided(
                                session, table, item, gpc=False, now=now
                            )
                            acts[index] = [act]
                        else:
                            checked = self._checked_all(
                                session, policy, item.choices, now, located=item.located
                            )
                            waiting.append((index, checked))
                    except (ValueError, LookupError) as refused:  # raised before any write
                        outcomes[index] = refused
                append_waiting()
                record_many(session, [act for done in acts for act in done], now=now)
            except BaseException:
                transaction.rollback()
                raise
            try:
                transaction.commit()
            except Exception as unknown:  # noqa: BLE001 - maybe committed, maybe not: no retry
                return [unknown] * len(batch)
        return outcomes

    def policy_in_force(self) -> LoadedPolicy:
        """The policy version in force; `NoPolicyInForce` if none is."""
        return self._policy()

    def check_purpose(self, purpose: str) -> None:
        """Raise `UnknownPurpose` unless the policy in force declares `purpose`."""
        if purpose not in self._policy().document.purposes:
            raise UnknownPurpose(purpose)

    def audience(
        self,
        purpose: str,
        categories: Sequence[str],
        subject_ids: Iterable[str],
        *,
        actor: str,
        batch: int = 10_000,
        now: dt.datetime | None = None,
    ) -> Iterator[str]:
        """The subjects among `subject_ids` whose data in `categories` may be used for
        `purpose`, in the order given; erased and unknown subjects are left out. One audit
        entry records the whole call once the audience has been read to its end.

        The policy's part of the decision is settled once. Then, for a consent purpose, one
        indexed scan finds the live grantees; otherwise the few opt-outs are read, and whether
        each person exists is checked in batches (or, for a large audience, all at once).
        """
        now = now or dt.datetime.now(dt.UTC)
        policy = self._policy()
        if purpose not in policy.document.purposes:
            raise UnknownPurpose(purpose)
        allowed = audience_filter(self._table(policy), purpose, categories, now=now)
        asked = list(subject_ids)
        # Audited when asked, before anything is streamed: a client that stops reading half
        # way still leaves its trace.
        with self.sessions() as session, session.begin():
            record_many(
                session,
                [
                    Act(
                        actor,
                        "audience",
                        None,
                        purpose,
                        {"categories": sorted(categories), "asked": len(asked)},
                    )
                ],
            )
        table = self._table(policy)
        with self.sessions() as session:
            erased = erased_subjects(session)
            restricted = restricted_subjects(session)
            # Visitors' cookie choices are not a person's: an audience is of vault subjects.
            methods: dict[str, str] = {}
            choices = {
                subject_id: (granted, _utc(expires) if expires else None)
                for subject_id, granted, expires, methods[subject_id] in session.execute(
                    select(
                        ConsentChoice.subject_id,
                        ConsentChoice.granted,
                        ConsentChoice.expires_at,
                        ConsentChoice.method,
                    )
                    .outerjoin(ConsentVisitor, ConsentVisitor.id == ConsentChoice.subject_id)
                    .where(ConsentChoice.purpose == purpose, ConsentVisitor.id.is_(None))
                )
            }
            needs_consent = policy.document.purposes[purpose].legal_basis is LegalBasis.CONSENT
            known: set[str] | None = None
            if not needs_consent and len(asked) > 100_000:
                known = all_live_subjects(session)
        for chunk in _chunks(asked, batch):
            if needs_consent:
                live = {s for s in chunk if s in choices and s not in erased}
            elif known is not None:
                live = {s for s in chunk if s in known}
            else:
                with self.sessions() as session:
                    live = live_subjects(session, chunk)
            for subject_id in chunk:
                if subject_id not in live or not allowed(choices.get(subject_id)):
                    continue
                state = restricted.get(subject_id)
                if state is not None and not _restricted_allows(
                    table,
                    purpose,
                    categories,
                    state=state,
                    choice=choices.get(subject_id),
                    method=methods.get(subject_id),
                    now=now,
                ):
                    continue
                yield subject_id

    def honor_gpc(self, subject_id: str, *, source: str, actor: str) -> list[int]:
        """Record the Global Privacy Control signal: an opt-out of every sale or sharing purpose
        the person has not already opted out of."""
        policy = self._policy()
        if (
            policy.document.signals.global_privacy_control
            is not GpcAnswer.OPT_OUT_OF_SALE_AND_SHARING
        ):
            return []
        now = dt.datetime.now(dt.UTC)
        with self.sessions() as session:
            visitor = session.get(ConsentVisitor, subject_id) is not None
        current = {
            purpose: choice
            for purpose, choice in self.choices(subject_id).items()
            if choice.expires_at is None or choice.expires_at > now
        }
        # A visitor's ledger holds only the purposes of cookie categories.
        concerned = self._table(policy).visitor_rules if visitor else policy.document.purposes
        to_withdraw = [
            key
            for key, purpose in policy.document.purposes.items()
            if (purpose.sale or purpose.sharing)
            and key in concerned
            and (key not in current or current[key].granted)
        ]
        return self.record(
            [
                ChoiceToRecord(
                    subject_id, key, Action.WITHDRAW, Method.GPC, source, notice_sha256=NO_NOTICE
                )
                for key in to_withdraw
            ],
            actor=actor,
        )

    def verify(self) -> int | None:
        """The seq of the first event whose chain link or content does not hold, or None."""
        with self.sessions() as session:
            rows = session.scalars(select(ConsentEventRow).order_by(ConsentEventRow.seq)).all()
            return first_break((_event(r), r.prev_hash, r.hash) for r in rows)

    def rebuild_state(self) -> bool:
        """Recompute the current state from the ledger; true if it equalled the kept state."""
        with self.sessions() as session, session.begin():
            rows = session.scalars(select(ConsentEventRow)).all()
            by_subject: dict[str, list[ConsentEvent]] = {}
            for row in rows:
                by_subject.setdefault(row.subject_id, []).append(_event(row))
            rebuilt = {
                (s, p): c for s, events in by_subject.items() for p, c in fold(events).items()
            }
            kept = {
                (c.subject_id, c.purpose): Choice(
                    c.granted, c.seq, c.at, Method(c.method), c.expires_at
                )
                for c in session.scalars(select(ConsentChoice))
            }
            same = {k: (v.granted, v.seq) for k, v in rebuilt.items()} == {
                k: (v.granted, v.seq) for k, v in kept.items()
            }
            session.execute(delete(ConsentChoice))
            for (subject_id, purpose), choice in rebuilt.items():
                session.execute(
                    insert(ConsentChoice).values(
                        subject_id=subject_id,
                        purpose=purpose,
                        granted=choice.granted,
                        seq=choice.seq,
                        at=choice.at,
                        method=choice.method.value,
                        expires_at=choice.expires_at,
                    )
                )
            return same

    def _policy(self) -> LoadedPolicy:
        with self.sessions() as session:
            return self._policy_in(session)

    def _policy_in(self, session: Session) -> LoadedPolicy:
        found = policy_in_force(session)
        if found is None:
            raise NoPolicyInForce("no policy version is in force: publish one first")
        return found

    def _table(self, policy: LoadedPolicy) -> DecisionTable:
        table = _tables.get(policy.content_hash)
        if table is None:
            table = _tables[policy.content_hash] = DecisionTable.compile(policy.document)
        return table


@dataclass(frozen=True)
class _Recording:
    """`ConsentLedger.arecord`'s call, waiting for its batch."""

    choices: tuple[ChoiceToRecord, ...]
    actor: str
    located: bool = False
    """A refusal says which choice it was (`ChoiceRefusedAt`), even of one."""


@dataclass(frozen=True)
class _Deciding:
    """`ConsentLedger.adecide`'s (or `decide`'s) question."""

    subject_id: str
    purpose: str
    categories: tuple[str, ...]
    actor: str
    recipient: str | None


def _people(item: _Recording | _Deciding) -> set[str]:
    """Whose consent an item reads or writes."""
    if isinstance(item, _Deciding):
        return {item.subject_id}
    return {choice.subject_id for choice in item.choices}


def _decided(
    session: Session, table: DecisionTable, asked: _Deciding, *, gpc: bool, now: dt.datetime
) -> tuple[Decision, Act]:
    """The decision and the act that audits it; reads only, so a refusal leaves nothing."""
    visitor, state = _check_chooser(session, asked.subject_id)
    decision = table.decide(
        asked.purpose,
        asked.categories,
        current_choices(session, asked.subject_id),
        now=now,
        recipient=asked.recipient,
        gpc=gpc,
        visitor=visitor,
        band=None if state is None else state.age_band,
        frozen=state is not None and state.frozen,
    )
    return decision, _decision_act(asked, decision, gpc=gpc)


def _decide_all(
    session: Session,
    table: DecisionTable,
    questions: Sequence[tuple[str, str, Sequence[str], str | None]],
    *,
    actor: str,
    now: dt.datetime,
) -> tuple[list[Decision | SubjectNotFound | SubjectErased], list[Act]]:
    """The answers of `ConsentLedger.decide_many`, from the states and choices `session`
    reads, and the audit entries of the decisions among them."""
    choosers = _choosers(session, [subject_id for subject_id, _, _, _ in questions])
    choices = _choices_of_many(session, list(choosers))
    answers: list[Decision | SubjectNotFound | SubjectErased] = []
    acts: list[Act] = []
    for subject_id, purpose, categories, recipient in questions:
        chooser = choosers.get(subject_id)
        if chooser is None:
            answers.append(SubjectNotFound(subject_id))
            continue
        if isinstance(chooser, SubjectErased):
            answers.append(chooser)
            continue
        visitor, state = chooser
        asked = _Deciding(subject_id, purpose, tuple(categories), actor, recipient)
        decision = table.decide(
            purpose,
            asked.categories,
            choices.get(subject_id, {}),
            now=now,
            recipient=recipient,
            gpc=False,
            visitor=visitor,
            band=None if state is None else state.age_band,
            frozen=state is not None and state.frozen,
        )
        answers.append(decision)
        acts.append(_decision_act(asked, decision, gpc=False))
    return answers, acts


def _decision_act(asked: _Deciding, decision: Decision, *, gpc: bool) -> Act:
    """The audit entry of a decision."""
    details = {
        "allowed": decision.allowed,
        "categories": sorted(asked.categories),
        "recipient": asked.recipient,
        "gpc": gpc,
    }
    return Act(asked.actor, "decide", asked.subject_id, asked.purpose, details)


def _recorded_acts(actor: str, events: Sequence[ConsentEvent], seqs: Sequence[int]) -> list[Act]:
    return [
        Act(
            actor,
            "consent." + e.action.value,
            e.subject_id,
            e.purpose,
            {"method": e.method.value, "source": e.source, "seq": seq},
        )
        for e, seq in zip(events, seqs, strict=True)
    ]


def _restricted_allows(
    table: DecisionTable,
    purpose: str,
    categories: Sequence[str],
    *,
    state: SubjectState,
    choice: tuple[bool, dt.datetime | None] | None,
    method: str | None,
    now: dt.datetime,
) -> bool:
    """A minor's or a frozen child's place in an audience: the full decision, as `decide` gives
    it (these subjects are few)."""
    folded: dict[str, Choice] = {}
    if choice is not None and method is not None:
        granted, expires = choice
        folded[purpose] = Choice(granted, 0, now, Method(method), expires)
    return table.decide(
        purpose, categories, folded, now=now, band=state.age_band, frozen=state.frozen
    ).allowed


def _check_chooser(session: Session, subject_id: str) -> tuple[bool, SubjectState | None]:
    """Raise unless `subject_id` is a live vault subject or a cookie-banner visitor: whether
    it is a visitor, and a subject's age band and frozen state."""
    if session.execute(_IS_VISITOR, {"visitor_id": subject_id}).first() is not None:
        return True, None
    return False, check_live_subject(session, subject_id)


def _choosers(
    session: Session, ids: Sequence[str]
) -> dict[str, tuple[bool, SubjectState | None] | SubjectErased]:
    """`_check_chooser` for many IDs, a few queries for them all: each visitor or live
    subject as `_check_chooser` answers it, an erased subject as `SubjectErased`; an unknown
    ID is left out."""
    found: dict[str, tuple[bool, SubjectState | None] | SubjectErased] = {}
    for chunk in _chunks(dict.fromkeys(ids), 500):
        for visitor_id in session.scalars(_VISITORS_AMONG, {"ids": chunk}).all():
            found[visitor_id] = (True, None)
        for subject_id, state in subject_states(session, chunk).items():
            found[subject_id] = SubjectErased(subject_id) if state is None else (False, state)
    return found


def _choices_of_many(session: Session, ids: Sequence[str]) -> dict[str, dict[str, Choice]]:
    """`current_choices` for many subjects (or visitors)."""
    choices: dict[str, dict[str, Choice]] = {}
    for chunk in _chunks(ids, 500):
        for subject_id, *columns in session.execute(_CHOICES_OF_MANY, {"ids": chunk}).all():
            choices.setdefault(subject_id, {})[columns[0]] = _choice(columns)
    return choices


def _choice(row: Sequence[Any]) -> Choice:
    """A current choice from its row (`_CHOICE_COLUMNS`, in order)."""
    _, granted, seq, at, method, expires_at = row
    return Choice(
        granted,
        seq,
        at if at.tzinfo else at.replace(tzinfo=dt.UTC),
        _METHODS[method],
        _utc(expires_at) if expires_at else None,
    )


_METHODS = {method.value: method for method in Method}


# The statements on every write's and decision's path, built once: building a statement costs
# more than running it (SQLAlchemy caches the compiled form, not the statement object). They
# are table statements, not ORM ones, so no ORM object of these rows is ever held in a session
# that could go stale: the state is read as plain rows too (`current_choices`).
_EVENTS_TABLE = cast("Table", ConsentEventRow.__table__)
_CHOICES_TABLE = cast("Table", ConsentChoice.__table__)
_INSERT_EVENTS = insert(_EVENTS_TABLE)
_INSERT_CHOICE = insert(_CHOICES_TABLE)
_FORGET_CHOICE = delete(_CHOICES_TABLE).where(
    _CHOICES_TABLE.c.subject_id == bindparam("forget_subject"),
    _CHOICES_TABLE.c.purpose == bindparam("forget_purpose"),
)
_CHOICE_COLUMNS = (
    _CHOICES_TABLE.c.purpose,
    _CHOICES_TABLE.c.granted,
    _CHOICES_TABLE.c.seq,
    _CHOICES_TABLE.c.at,
    _CHOICES_TABLE.c.method,
    _CHOICES_TABLE.c.expires_at,
)
_CHOICES_OF = select(*_CHOICE_COLUMNS).where(_CHOICES_TABLE.c.subject_id == bindparam("subject_id"))
_CHOICES_OF_MANY = select(_CHOICES_TABLE.c.subject_id, *_CHOICE_COLUMNS).where(
    _CHOICES_TABLE.c.subject_id.in_(bindparam("ids", expanding=True))
)
_IS_VISITOR = select(ConsentVisitor.id).where(ConsentVisitor.id == bindparam("visitor_id"))
_VISITORS_AMONG = select(ConsentVisitor.id).where(
    ConsentVisitor.id.in_(bindparam("ids", expanding=True))
)


def current_choices(session: Session, subject_id: str) -> dict[str, Choice]:
    """The subject's current choice per purpose, read in `session`."""
    rows = session.execute(_CHOICES_OF, {"subject_id": subject_id})
    return {row[0]: _choice(row) for row in rows}


def events_of(session: Session, subject_id: str) -> list[ConsentEvent]:
    """Every consent event of the subject, oldest first, read in `session`."""
    rows = session.scalars(
        select(ConsentEventRow)
        .where(ConsentEventRow.subject_id == subject_id)
        .order_by(ConsentEventRow.seq)
    ).all()
    return [_event(row) for row in rows]


def _utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _columns(event: ConsentEvent) -> dict[str, object]:
    return {**event.__dict__, "action": event.action.value, "method": event.method.value}


def _event(row: ConsentEventRow) -> ConsentEvent:
    return ConsentEvent(
        seq=row.seq,
        subject_id=row.subject_id,
        purpose=row.purpose,
        action=Action(row.action),
        method=Method(row.method),
        source=row.source,
        notice_sha256=row.notice_sha256,
        policy_version=row.policy_version,
        at=_utc(row.at),
        expires_at=_utc(row.expires_at) if row.expires_at else None,
        prompted_by_pledge=row.prompted_by_pledge,
    )


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
