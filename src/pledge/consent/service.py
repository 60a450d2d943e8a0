"""Consent use cases: record a choice, read the choices, decide, verify and rebuild."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import Act, advance_chain, record_many, reserve_chain
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
from pledge.consent.tables import ConsentChoice, ConsentEventRow, ConsentHead
from pledge.policy import LoadedPolicy, current_version
from pledge.policy.document import GpcAnswer, LegalBasis
from pledge.vault import (
    NoPolicyInForce,
    UnknownPurpose,
    all_live_subjects,
    check_live_subject,
    erased_subjects,
    live_subjects,
)


class ConsentRefused(ValueError):
    """The choice cannot be recorded (e.g. a purpose that needs no consent)."""


class RepromptBlocked(ValueError):
    """An opt-in Pledge prompted for, within 12 months of an opt-out of sale or sharing."""


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

    def record(
        self, choices: Sequence[ChoiceToRecord], *, actor: str, now: dt.datetime | None = None
    ) -> list[int]:
        """Append choices to the ledger and update the current state, in one transaction."""
        if not choices:
            return []
        now = now or dt.datetime.now(dt.UTC)
        policy = self._policy()
        with self.sessions() as session, session.begin():
            events = [self._checked(session, policy, choice, now) for choice in choices]
            seqs = self._append(session, events)
            record_many(
                session,
                [
                    Act(
                        actor,
                        "consent." + e.action.value,
                        e.subject_id,
                        e.purpose,
                        {"method": e.method.value, "source": e.source, "seq": seq},
                    )
                    for e, seq in zip(events, seqs, strict=True)
                ],
                now=now,
            )
            return seqs

    def _checked(
        self, session: Session, policy: LoadedPolicy, choice: ChoiceToRecord, now: dt.datetime
    ) -> ConsentEvent:
        check_live_subject(session, choice.subject_id)
        purpose = policy.document.purposes.get(choice.purpose)
        if purpose is None:
            raise UnknownPurpose(choice.purpose)
        if purpose.legal_basis not in {LegalBasis.CONSENT, LegalBasis.OPT_OUT}:
            raise ConsentRefused(
                f"'{choice.purpose}' rests on {purpose.legal_basis.value}: it asks for no consent"
            )
        if choice.action is Action.GRANT and choice.prompted_by_pledge:
            history = self._events(session, choice.subject_id)
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

    def _append(self, session: Session, events: list[ConsentEvent]) -> list[int]:
        seq, prev = reserve_chain(session, ConsentHead, len(events))
        rows, seqs = [], []
        for offset, event in enumerate(events):
            numbered = ConsentEvent(**{**event.__dict__, "seq": seq + offset})
            digest = event_hash(numbered, prev)
            rows.append({**_columns(numbered), "prev_hash": prev, "hash": digest})
            seqs.append(numbered.seq)
            self._remember(session, numbered)
            prev = digest
        session.execute(insert(ConsentEventRow), rows)
        advance_chain(session, ConsentHead, prev)
        return seqs

    def _remember(self, session: Session, event: ConsentEvent) -> None:
        session.execute(
            delete(ConsentChoice).where(
                ConsentChoice.subject_id == event.subject_id, ConsentChoice.purpose == event.purpose
            )
        )
        session.execute(
            insert(ConsentChoice).values(
                subject_id=event.subject_id,
                purpose=event.purpose,
                granted=event.action is Action.GRANT,
                seq=event.seq,
                at=event.at,
                method=event.method.value,
                expires_at=event.expires_at,
            )
        )

    def consent_record(
        self, subject_id: str, *, actor: str
    ) -> tuple[dict[str, Choice], list[ConsentEvent]]:
        """The subject's current choices and full history, for a reader; checked and audited."""
        with self.sessions() as session, session.begin():
            check_live_subject(session, subject_id)
            record_many(session, [Act(actor, "consent.read", subject_id, None, {})])
            return _choices(session, subject_id), self._events(session, subject_id)

    def gpc_is_honored(self) -> bool:
        """Whether the policy in force answers Global Privacy Control with an opt-out."""
        signal = self._policy().document.signals.global_privacy_control
        return signal is GpcAnswer.OPT_OUT_OF_SALE_AND_SHARING

    def choices(self, subject_id: str) -> dict[str, Choice]:
        """The subject's current choice per purpose (from the state the ledger keeps)."""
        with self.sessions() as session:
            return _choices(session, subject_id)

    def history(self, subject_id: str) -> list[ConsentEvent]:
        """Every consent event of the subject, oldest first."""
        with self.sessions() as session:
            return self._events(session, subject_id)

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
            check_live_subject(session, subject_id)
            decision = table.decide(
                purpose,
                categories,
                _choices(session, subject_id),
                now=now,
                recipient=recipient,
                gpc=gpc,
            )
            record_many(
                session,
                [
                    Act(
                        actor,
                        "decide",
                        subject_id,
                        purpose,
                        {
                            "allowed": decision.allowed,
                            "categories": sorted(categories),
                            "recipient": recipient,
                            "gpc": gpc,
                        },
                    )
                ],
                now=now,
            )
        return decision

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
        with self.sessions() as session:
            erased = erased_subjects(session)
            choices = {
                subject_id: (granted, _utc(expires) if expires else None)
                for subject_id, granted, expires in session.execute(
                    select(
                        ConsentChoice.subject_id, ConsentChoice.granted, ConsentChoice.expires_at
                    ).where(ConsentChoice.purpose == purpose)
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
                if subject_id in live and allowed(choices.get(subject_id)):
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
        current = {
            purpose: choice
            for purpose, choice in self.choices(subject_id).items()
            if choice.expires_at is None or choice.expires_at > now
        }
        to_withdraw = [
            key
            for key, purpose in policy.document.purposes.items()
            if (purpose.sale or purpose.sharing) and (key not in current or current[key].granted)
        ]
        return self.record(
            [
                ChoiceToRecord(
                    subject_id, key, Action.WITHDRAW, Method.GPC, source, notice_sha256="0" * 64
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

    def _events(self, session: Session, subject_id: str) -> list[ConsentEvent]:
        rows = session.scalars(
            select(ConsentEventRow)
            .where(ConsentEventRow.subject_id == subject_id)
            .order_by(ConsentEventRow.seq)
        ).all()
        return [_event(row) for row in rows]

    def _policy(self) -> LoadedPolicy:
        found = current_version(self.sessions)
        if found is None:
            raise NoPolicyInForce("no policy version is in force: publish one first")
        return found[1]

    def _table(self, policy: LoadedPolicy) -> DecisionTable:
        table = _tables.get(policy.content_hash)
        if table is None:
            table = _tables[policy.content_hash] = DecisionTable.compile(policy.document)
        return table


def _choices(session: Session, subject_id: str) -> dict[str, Choice]:
    rows = session.scalars(select(ConsentChoice).where(ConsentChoice.subject_id == subject_id))
    return {
        r.purpose: Choice(
            r.granted,
            r.seq,
            _utc(r.at),
            Method(r.method),
            _utc(r.expires_at) if r.expires_at else None,
        )
        for r in rows
    }


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
