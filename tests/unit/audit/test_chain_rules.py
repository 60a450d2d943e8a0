"""The audit chain: any edit, deletion or insertion is found, at the entry where it happened."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pledge.audit.rules import (
    GENESIS,
    ChainBreak,
    ChainLink,
    canonical_details,
    entry_hash,
    find_break,
)

Chain = list[tuple[ChainLink, str]]
START = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)


def chain_of(links: list[dict[str, Any]]) -> Chain:
    """Entries 1..n linked to each other, each with its true hash."""
    chain: Chain = []
    prev = GENESIS
    for seq, fields in enumerate(links, start=1):
        link = ChainLink(seq=seq, prev_hash=prev, **fields)
        prev = entry_hash(link)
        chain.append((link, prev))
    return chain


def head_of(chain: Chain) -> tuple[int, str] | None:
    return (chain[-1][0].seq, chain[-1][1]) if chain else None


def five_entries() -> Chain:
    actions = ["subject.created", "consent.granted", "value.read", "value.corrected", "shred"]
    return chain_of(
        [
            {
                "at": START + dt.timedelta(minutes=n),
                "actor": "api:collector",
                "action": action,
                "subject_id": "subject-1",
                "purpose": "essential.service" if n % 2 else None,
                "details": canonical_details({"n": n, "field": "email"}),
            }
            for n, action in enumerate(actions)
        ]
    )


def relinked(chain: Chain, at: int, forged: ChainLink) -> Chain:
    """`chain` with `forged` placed at index `at`, linked and hashed as a forger would."""
    return [*chain[:at], (forged, entry_hash(forged)), *chain[at:]]


def test_an_untouched_chain_is_intact_up_to_its_head() -> None:
    chain = five_entries()

    assert find_break(chain, head_of(chain)) is None
    assert head_of(chain) == (5, chain[4][1])


def test_an_empty_chain_without_a_head_is_intact() -> None:
    assert find_break([], None) is None


def test_every_entry_links_to_the_hash_of_the_one_before() -> None:
    chain = five_entries()

    assert chain[0][0].prev_hash == GENESIS
    for (before, before_hash), (after, _) in itertools.pairwise(chain):
        assert after.prev_hash == before_hash
        assert after.seq == before.seq + 1


def test_an_entry_whose_details_were_edited_is_named_as_edited() -> None:
    chain = five_entries()
    link, stored = chain[2]
    chain[2] = (dataclasses.replace(link, details=canonical_details({"n": 99})), stored)

    assert find_break(chain, head_of(five_entries())) == ChainBreak(
        3, "its content does not match its hash (edited)"
    )


def test_an_edit_whose_hash_was_recomputed_breaks_the_link_of_the_next_entry() -> None:
    chain = five_entries()
    edited = dataclasses.replace(chain[2][0], actor="someone else")
    chain[2] = (edited, entry_hash(edited))

    found = find_break(chain, head_of(five_entries()))

    assert found == ChainBreak(4, "does not link to the entry before it (inserted or replaced)")


def test_a_deleted_middle_entry_is_named_as_missing() -> None:
    chain = five_entries()
    del chain[2]

    found = find_break(chain, head_of(five_entries()))

    assert found == ChainBreak(4, "expected entry 3 here: an entry is missing")


def test_an_inserted_entry_that_links_to_nothing_is_found_where_it_was_put() -> None:
    chain = five_entries()
    forged = dataclasses.replace(chain[2][0], actor="forger", prev_hash="f" * 64)

    found = find_break(relinked(chain, 2, forged), head_of(chain))

    assert found == ChainBreak(3, "does not link to the entry before it (inserted or replaced)")


def test_an_inserted_entry_linked_to_its_predecessor_is_found_as_a_duplicate_seq() -> None:
    chain = five_entries()
    forged = dataclasses.replace(chain[2][0], actor="forger", prev_hash=chain[1][1])

    found = find_break(relinked(chain, 2, forged), head_of(chain))

    assert found == ChainBreak(3, "expected entry 4 here: an entry is duplicated or inserted")


def test_an_inserted_entry_with_the_rest_renumbered_breaks_the_link_after_it() -> None:
    chain = five_entries()
    forged = dataclasses.replace(chain[2][0], actor="forger", prev_hash=chain[1][1])
    renumbered = [
        (dataclasses.replace(link, seq=link.seq + 1), stored) for link, stored in chain[2:]
    ]

    found = find_break([*chain[:2], (forged, entry_hash(forged)), *renumbered], head_of(chain))

    assert found == ChainBreak(4, "does not link to the entry before it (inserted or replaced)")


def test_entries_deleted_from_the_end_are_found_through_the_head() -> None:
    chain = five_entries()

    found = find_break(chain[:3], head_of(chain))

    assert found == ChainBreak(
        4, "the chain ends at entry 3 but its head is entry 5 (entries deleted from the end)"
    )


def test_a_chain_emptied_entirely_is_found_through_the_head() -> None:
    chain = five_entries()

    found = find_break([], head_of(chain))

    assert found is not None
    assert found.seq == 1
    assert "ends at entry 0 but its head is entry 5" in found.problem


def test_a_head_that_names_the_last_entry_with_another_hash_is_a_break() -> None:
    chain = five_entries()

    assert find_break(chain, (5, "e" * 64)) == ChainBreak(
        6, "the chain ends at entry 5 but its head is entry 5 (entries deleted from the end)"
    )


def test_a_chain_break_names_its_entry_when_printed() -> None:
    assert str(ChainBreak(3, "edited")) == "entry 3: edited"


def test_canonical_details_do_not_depend_on_key_order() -> None:
    one = canonical_details({"b": 1, "a": {"y": [1, 2], "x": None}})
    other = canonical_details({"a": {"x": None, "y": [1, 2]}, "b": 1})

    assert one == other == '{"a":{"x":null,"y":[1,2]},"b":1}'


def test_canonical_details_write_dates_and_other_objects_as_text() -> None:
    assert canonical_details({"at": dt.date(2025, 3, 1)}) == '{"at":"2025-03-01"}'


def test_an_entry_hash_is_sha256_of_its_fields_as_compact_json() -> None:
    """The format every stored chain was written in: a verifier outside Pledge can redo it, and
    a faster encoder must not change a single byte of it."""
    link = ChainLink(
        seq=7,
        at=dt.datetime(2026, 12, 3, 10, 30, 0, 123456, tzinfo=dt.UTC),
        actor="api-key:shop",
        action="decide",
        subject_id="0c7d2a4e-1111-4222-8333-444455556666",
        purpose="marketing.communications.email",
        details=canonical_details({"recipient": None, "allowed": True, "note": "café"}),
        prev_hash=GENESIS,
    )
    recipe = json.dumps(
        [
            7,
            "2026-12-03T10:30:00.123456+00:00",
            link.actor,
            link.action,
            link.subject_id,
            link.purpose,
            '{"allowed":true,"note":"caf\\u00e9","recipient":null}',
            GENESIS,
        ],
        separators=(",", ":"),
    )
    assert entry_hash(link) == hashlib.sha256(recipe.encode()).hexdigest()


def test_the_same_instant_in_another_time_zone_hashes_the_same() -> None:
    link = five_entries()[0][0]
    in_paris = link.at.astimezone(dt.timezone(dt.timedelta(hours=1)))

    assert entry_hash(dataclasses.replace(link, at=in_paris)) == entry_hash(link)


# --- Property: one changed field is found at its entry ----------------------------------------

_TEXT = st.text(max_size=12)
_LINK_FIELDS = st.fixed_dictionaries(
    {
        "at": st.integers(min_value=0, max_value=10**16).map(
            lambda us: START + dt.timedelta(microseconds=us)
        ),
        "actor": _TEXT,
        "action": _TEXT,
        "subject_id": st.none() | _TEXT,
        "purpose": st.none() | _TEXT,
        "details": st.dictionaries(_TEXT, st.integers() | _TEXT, max_size=3).map(canonical_details),
    }
)
FIELDS = [f.name for f in dataclasses.fields(ChainLink)]


@st.composite
def tampered_chains(draw: st.DrawFn) -> tuple[Chain, Chain, int, str]:
    """A chain, and a copy with one field of one entry changed (which index, which field)."""
    chain = chain_of(draw(st.lists(_LINK_FIELDS, min_size=1, max_size=8)))
    index = draw(st.integers(min_value=0, max_value=len(chain) - 1))
    field = draw(st.sampled_from(FIELDS))
    link, stored = chain[index]
    old = getattr(link, field)
    new: Any
    if field == "seq":
        new = draw(st.integers(min_value=-5, max_value=20).filter(lambda v: v != old))
    elif field == "at":
        new = old + dt.timedelta(microseconds=draw(st.integers(1, 10**12)))
    elif field == "prev_hash":
        new = draw(st.text("0123456789abcdef", min_size=64, max_size=64).filter(lambda v: v != old))
    elif field in ("subject_id", "purpose"):
        new = draw((st.none() | _TEXT).filter(lambda v: v != old))
    else:
        new = draw(_TEXT.filter(lambda v: v != old))
    tampered = list(chain)
    tampered[index] = (dataclasses.replace(link, **{field: new}), stored)
    return chain, tampered, index, field


@given(tampered_chains())
def test_changing_any_one_field_of_any_one_entry_is_found_at_that_entry(
    case: tuple[Chain, Chain, int, str],
) -> None:
    chain, tampered, index, field = case
    changed = tampered[index][0]

    found = find_break(tampered, head_of(chain))

    assert found is not None
    if field == "seq":
        # The entry is named by the number it now carries, and the one expected is stated.
        assert found == ChainBreak(
            changed.seq,
            f"expected entry {index + 1} here: an entry is "
            + ("missing" if changed.seq > index + 1 else "duplicated or inserted"),
        )
    elif field == "prev_hash":
        # The entry's own link is checked before its hash, so the entry itself is named.
        assert found == ChainBreak(
            index + 1, "does not link to the entry before it (inserted or replaced)"
        )
    else:
        assert found == ChainBreak(index + 1, "its content does not match its hash (edited)")


@given(st.lists(_LINK_FIELDS, max_size=8))
def test_any_untouched_chain_is_intact(links: list[dict[str, Any]]) -> None:
    chain = chain_of(links)

    assert find_break(chain, head_of(chain)) is None


@given(st.lists(_LINK_FIELDS, min_size=2, max_size=8), st.data())
def test_deleting_any_one_entry_is_found(links: list[dict[str, Any]], data: st.DataObject) -> None:
    chain = chain_of(links)
    index = data.draw(st.integers(min_value=0, max_value=len(chain) - 1))
    shortened = chain[:index] + chain[index + 1 :]

    found = find_break(shortened, head_of(chain))

    # A deleted entry is found where the next one stands; the last one, through the head, at
    # the number it had.
    last = index == len(chain) - 1
    assert found is not None
    assert found.seq == (index + 1 if last else index + 2)
    assert ("deleted from the end" if last else "missing") in found.problem
