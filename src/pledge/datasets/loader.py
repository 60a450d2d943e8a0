"""Reading a dataset file: YAML to a validated `DatasetFile`, or every problem at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pledge.datasets.document import DatasetFile, Table
from pledge.datasets.rules import PathKey, Problem, dataset_problems, dotted

MAX_FILE_BYTES = 1024 * 1024
"""A dataset file larger than this is refused before parsing."""


@dataclass(frozen=True)
class DatasetProblem:
    """One thing wrong with a dataset file, located by file, path and (when known) line."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


class DatasetsInvalid(Exception):
    """A dataset file that cannot be used; `problems` holds every problem found."""

    def __init__(self, problems: Sequence[DatasetProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(
            f"the dataset file is invalid ({count} problem{'s' * (count != 1)}):\n{lines}"
        )


def load_datasets(path: Path) -> DatasetFile:
    """Read and validate the dataset file at `path`; raise `DatasetsInvalid` listing every
    problem."""
    name = str(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as error:
        raise DatasetsInvalid(
            [DatasetProblem(name, "", f"cannot read the file: {error.strerror}")]
        ) from None
    if len(raw_bytes) > MAX_FILE_BYTES:
        raise DatasetsInvalid([DatasetProblem(name, "", f"larger than {MAX_FILE_BYTES} bytes")])
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetsInvalid([DatasetProblem(name, "", "not UTF-8 text")]) from None
    return load_datasets_text(text, name)


def load_datasets_text(text: str, name: str = "<datasets>") -> DatasetFile:
    """Validate dataset-file YAML `text`; `name` is how problems refer to it."""
    raw, lines = _parse_yaml(text, name)
    problems = list(_structural_problems(raw))
    problems.extend(_cross_problems(raw))
    if problems:
        found = {
            DatasetProblem(name, dotted(p.path), p.message, _line_of(p.path, lines))
            for p in problems
        }
        raise DatasetsInvalid(sorted(found, key=lambda p: (p.line or 0, p.path, p.message)))
    return DatasetFile.model_validate(raw)


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
    except _DuplicateKey as duplicate:
        raise DatasetsInvalid(
            [
                DatasetProblem(
                    name,
                    dotted(duplicate.path),
                    f"duplicate key '{duplicate.path[-1]}'",
                    duplicate.line,
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else None
        message = f"not valid YAML: {error.problem or error.context}"
        raise DatasetsInvalid([DatasetProblem(name, "", message, line)]) from None
    except yaml.YAMLError as error:
        raise DatasetsInvalid([DatasetProblem(name, "", f"not valid YAML: {error}")]) from None
    if not isinstance(data, dict):
        raise DatasetsInvalid(
            [DatasetProblem(name, "", "the file must be a mapping with a 'datasets' key")]
        )
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
    """Pydantic's findings, every entry of every dataset at once."""
    try:
        DatasetFile.model_validate(raw)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            loc = tuple(part for part in item["loc"] if not _is_pydantic_tag(part))
            yield Problem(loc, _friendly(item))


def _is_pydantic_tag(part: str | int) -> bool:
    # Pydantic puts "[key]" in the location of a bad mapping key.
    return part == "[key]"


def _friendly(item: Mapping[str, Any]) -> str:
    kind = item["type"]
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown key (see docs/datasets.md for the keys this entry takes)"
    if kind == "string_pattern_mismatch" and "[key]" in item["loc"]:
        return "not a plain SQL name (letters, digits and _, not starting with a digit)"
    message = str(item["msg"])
    return message.removeprefix("Value error, ")


def _cross_problems(raw: Mapping[str, Any]) -> Iterable[Problem]:
    """Checks across tables, on the tables that are valid on their own."""
    datasets = raw.get("datasets")
    if not isinstance(datasets, dict):
        return
    for name, dataset in datasets.items():
        if not isinstance(dataset, dict) or not isinstance(dataset.get("tables"), dict):
            continue
        declared = {str(key) for key in dataset["tables"]}
        valid: dict[str, Table] = {}
        for table_name, table in dataset["tables"].items():
            try:
                valid[str(table_name)] = Table.model_validate(table)
            except ValidationError:
                continue
        yield from dataset_problems(str(name), valid, declared)


def _line_of(path: PathKey, lines: Mapping[PathKey, int]) -> int | None:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
