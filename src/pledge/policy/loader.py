"""Reading a policy file: YAML to a validated `PolicyDocument`, or every problem at once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pledge.policy.document import (
    ENTRY_SECTIONS,
    Children,
    PolicyDocument,
    PrivacyRequests,
    Signals,
)
from pledge.policy.rules import PolicyParts, Problem, PurposeMap, check_policy, compile_purpose_map

MAX_POLICY_BYTES = 2 * 1024 * 1024
"""A policy file larger than this is refused before parsing."""

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyError:
    """One thing wrong with a policy file, located by file, path and (when known) line."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


class PolicyInvalid(Exception):
    """A policy file that cannot be used; `errors` holds every problem found."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(f"the policy is invalid ({count} problem{'s' * (count != 1)}):\n{lines}")


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy with its source text and the hash that identifies its content."""

    document: PolicyDocument
    source_text: str
    content_hash: str = field(default="")

    @cached_property
    def purpose_map(self) -> PurposeMap:
        """Which categories each purpose may use, compiled once for this version."""
        return compile_purpose_map(self.document)

    @classmethod
    def of(cls, document: PolicyDocument, source_text: str) -> LoadedPolicy:
        """Wrap a validated document, computing its content hash."""
        return cls(document=document, source_text=source_text, content_hash=content_hash(document))


def content_hash(document: PolicyDocument) -> str:
    """SHA-256 of the document's canonical JSON: equal content, equal hash, whatever the layout."""
    canonical = json.dumps(document.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_policy_file(path: Path) -> LoadedPolicy:
    """Read and validate the policy at `path`; raise `PolicyInvalid` listing every problem."""
    name = str(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as error:
        raise PolicyInvalid(
            [PolicyError(name, "", f"cannot read the file: {error.strerror}")]
        ) from None
    if len(raw_bytes) > MAX_POLICY_BYTES:
        raise PolicyInvalid([PolicyError(name, "", f"larger than {MAX_POLICY_BYTES} bytes")])
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyInvalid([PolicyError(name, "", "not UTF-8 text")]) from None
    return load_policy_text(text, name)


def load_policy_text(text: str, name: str = "<policy>") -> LoadedPolicy:
    """Validate policy YAML `text`; `name` is how errors refer to it."""
    raw, lines = _parse_yaml(text, name)
    problems = list(_structural_problems(raw))
    partial = _partial_document(raw)
    problems.extend(check_policy(partial, declared=_declared_keys(raw)))
    if problems:
        errors = sorted(
            {
                PolicyError(name, _dotted(p.path), p.message, _line_of(p.path, lines))
                for p in problems
            },
            key=lambda e: (e.line or 0, e.path, e.message),
        )
        raise PolicyInvalid(errors)
    return LoadedPolicy.of(PolicyDocument.model_validate(raw), text)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, path: PathKey, line: int) -> None:
        self.path, self.line = path, line


def _parse_yaml(text: str, name: str) -> tuple[dict[str, Any], dict[PathKey, int]]:
    """Parse YAML safely, refusing duplicate keys, and note the line of every mapping key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines: dict[PathKey, int] = {}
        if node is not None:
            _walk(node, (), lines)
        data = yaml.safe_load(text)
    except _DuplicateKey as dup:
        message = f"duplicate key '{dup.path[-1]}'"
        raise PolicyInvalid([PolicyError(name, _dotted(dup.path), message, dup.line)]) from None
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else None
        message = f"not valid YAML: {error.problem or error.context}"
        raise PolicyInvalid([PolicyError(name, "", message, line)]) from None
    except yaml.YAMLError as error:
        raise PolicyInvalid([PolicyError(name, "", f"not valid YAML: {error}")]) from None
    if not isinstance(data, dict):
        raise PolicyInvalid([PolicyError(name, "", "the policy must be a mapping of sections")])
    return data, lines


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                raise _DuplicateKey(child, key_node.start_mark.line + 1)
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines)


def _structural_problems(raw: Mapping[str, Any]) -> Iterable[Problem]:
    """Pydantic's findings, every entry of every section at once."""
    try:
        PolicyDocument.model_validate(raw)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            loc = tuple(part for part in item["loc"] if not _is_pydantic_tag(part))
            yield Problem(loc, _friendly(item))


def _is_pydantic_tag(part: str | int) -> bool:
    # Pydantic inserts the validator name into locations of function validators.
    return isinstance(part, str) and (part.startswith(("function-", "[key]")))


def _friendly(item: Mapping[str, Any]) -> str:
    kind = item["type"]
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown key (see docs/policy-format.md for the keys this section takes)"
    message = str(item["msg"])
    return message.removeprefix("Value error, ")


def _partial_document(raw: Mapping[str, Any]) -> PolicyParts:
    """The valid parts of the file, so cross-references are checked even when others are broken."""
    sections: dict[str, Any] = {}
    for name, entry_model in ENTRY_SECTIONS.items():
        value = raw.get(name)
        if isinstance(value, dict):
            sections[name] = _valid_entries(value, entry_model)
    singles: tuple[tuple[str, type[BaseModel]], ...] = (
        ("signals", Signals),
        ("children", Children),
        ("requests", PrivacyRequests),
    )
    for name, model in singles:
        if name == "requests" and name not in raw:
            sections[name] = PrivacyRequests()
            continue
        try:
            sections[name] = model.model_validate(raw.get(name))
        except ValidationError:
            continue
    return PolicyParts(**sections)


def _valid_entries(entries: Mapping[Any, Any], model: type[BaseModel]) -> dict[str, Any]:
    valid = {}
    for key, value in entries.items():
        try:
            valid[str(key)] = model.model_validate(value)
        except ValidationError:
            continue
    return valid


def _declared_keys(raw: Mapping[str, Any]) -> dict[str, set[str]]:
    """Keys declared in each entry section, valid or not: a reference to them is not dangling."""
    return {
        name: {str(key) for key in raw[name]} if isinstance(raw.get(name), dict) else set()
        for name in ENTRY_SECTIONS
    }


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(path: PathKey, lines: Mapping[PathKey, int]) -> int | None:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
