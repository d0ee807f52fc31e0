"""The one mechanism by which a domain declares a kind of content: its files and its schema.

Files are YAML, parsed with the line of every value kept, so that every problem names the file,
the line and the field. A domain registers a kind with a pydantic model (the schema) and, if it
needs one, a check across kinds (a reward naming an unknown badge, say).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


@dataclass(frozen=True, order=True)
class ContentIssue:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '(file)'}: {self.message}"


class ContentInvalid(Exception):
    def __init__(self, issues: list[ContentIssue]) -> None:
        self.issues = sorted(issues)
        super().__init__("invalid content:\n" + "\n".join(f"  {i}" for i in self.issues))


@dataclass
class Document:
    """A parsed file: its data and the line of each path within it."""

    path: Path
    data: Any
    lines: dict[tuple[str | int, ...], int]

    def line_of(self, loc: tuple[str | int, ...]) -> int:
        # The deepest known prefix of the error's location.
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return 1


CrossCheck = Callable[["ContentStore"], list[ContentIssue]]
Combine = Callable[[list[tuple[str, Any]]], Any]


@dataclass
class ContentKind:
    """A kind of content: one file (`filename`) or a folder of YAML files (`filename` ends in '/')."""

    name: str
    filename: str  # relative to the content dir
    model: type[BaseModel]
    required: bool = False
    # A missing optional file leaves the kind absent (None), where others take their defaults.
    optional: bool = False
    check: CrossCheck | None = None
    # For a folder: the kind's value from each file's (relative path, validated model), in file order.
    combine: Combine | None = None

    def __post_init__(self) -> None:
        if self.is_folder and self.combine is None:
            raise ValueError(f"content kind {self.name}: a folder needs a combine function")

    @property
    def is_folder(self) -> bool:
        return self.filename.endswith("/")


# The kinds the process's domains declare (`server.app.DOMAINS`), set when its pipeline is installed.
_kinds: dict[str, ContentKind] = {}


def use_kinds(kinds: Iterable[ContentKind]) -> None:
    """Read and check these kinds of content from now on (the pipeline's `install` calls this)."""
    _kinds.clear()
    _kinds.update({k.name: k for k in kinds})


class _LineLoader(yaml.SafeLoader):
    pass


def parse_yaml(path: Path, text: str | None = None) -> Document:
    """Parse one YAML file, recording the line of every mapping key and sequence item."""
    text = path.read_text() if text is None else text
    lines: dict[tuple[str | int, ...], int] = {}
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is None:
        return Document(path, None, lines)

    def build(n: yaml.Node, loc: tuple[str | int, ...]) -> Any:
        lines.setdefault(loc, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = loader_construct(k)
                lines[(*loc, key)] = k.start_mark.line + 1
                out[key] = build(v, (*loc, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*loc, i)) for i, v in enumerate(n.value)]
        return loader_construct(n)

    def loader_construct(n: yaml.Node) -> Any:
        scalar_loader = _LineLoader("")
        try:
            return scalar_loader.construct_object(n, deep=True)
        finally:
            scalar_loader.dispose()

    return Document(path, build(node, ()), lines)


@dataclass
class ContentStore:
    """Validated content, by kind name, with the parsed files kept for the checks across kinds."""

    origin: str  # where the files came from: a directory, or "version N"
    items: dict[str, Any] = field(default_factory=dict)
    docs: dict[str, Document] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    version: int | None = None  # the published version serving, None for files read from disk

    def get(self, name: str) -> Any:
        return self.items.get(name)

    @cached_property
    def digest(self) -> str:
        return digest(self.files)

    def where(self, rel: str) -> str:
        return f"{self.origin}/{rel}" if self.origin else rel

    def issue(self, rel: str, loc: tuple[str | int, ...], message: str) -> ContentIssue:
        """A problem at `loc` within the file `rel`, with its line, for the checks across kinds."""
        doc = self.docs.get(rel)
        line = doc.line_of(loc) if doc else 0
        return ContentIssue(self.where(rel), line, ".".join(str(p) for p in loc), message)


def digest(files: dict[str, str]) -> str:
    """One fingerprint of a set of files: equal content publishes no new version."""
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def read_files(root: Path) -> dict[str, str]:
    """The text of every content file the registered kinds read, by path relative to `root`."""
    files: dict[str, str] = {}
    for kind in _kinds.values():
        if kind.is_folder:
            folder = root / kind.filename
            if folder.is_dir():
                for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
                    files[f"{kind.filename}{path.name}"] = path.read_text()
        elif (root / kind.filename).is_file():
            files[kind.filename] = (root / kind.filename).read_text()
    return files


def data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The part of a validation error's location that names places in the file.

    The schema's own steps (which member of a union, which validator) are left out: a manager
    reads `quests.0.remaining_text`, not `quests.0.remaining_text.function-after[...]`.
    """
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict):
            if part in cur:
                out.append(part)
                cur = cur[part]
            elif i + 1 < len(loc) and loc[i + 1] in cur:
                continue  # a union member's name: the next part is in the data
            else:
                out.append(part)  # a missing field, or a key's own error
                cur = None
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif cur is None and part == "[key]":
            out.append(part)
        # anything else goes below a plain value: the schema's own steps
    return tuple(out)


def _parse(store: ContentStore, rel: str, model: type[BaseModel]) -> tuple[Any, list[ContentIssue]]:
    where = store.where(rel)
    try:
        doc = parse_yaml(Path(rel), store.files[rel])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        return None, [ContentIssue(where, line, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    store.docs[rel] = doc
    data = doc.data if doc.data is not None else {}
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = data_path(data, tuple(err["loc"]))
            issues.append(ContentIssue(where, doc.line_of(loc), ".".join(str(p) for p in loc), err["msg"]))
        return None, issues


def _validate_kind(store: ContentStore, kind: ContentKind) -> tuple[Any, list[ContentIssue]]:
    if kind.is_folder:
        assert kind.combine is not None
        parsed: list[tuple[str, Any]] = []
        issues: list[ContentIssue] = []
        for rel in sorted(r for r in store.files if r.startswith(kind.filename)):
            value, found = _parse(store, rel, kind.model)
            issues.extend(found)
            if value is not None:
                parsed.append((rel, value))
        if kind.required and not parsed and not issues:
            issues.append(ContentIssue(store.where(kind.filename), 0, "", "no files in this folder"))
        return (None if issues else kind.combine(parsed)), issues
    if kind.filename not in store.files:
        if kind.required:
            return None, [ContentIssue(store.where(kind.filename), 0, "", "file is missing")]
        return (None if kind.optional else kind.model.model_validate({})), []
    return _parse(store, kind.filename, kind.model)


def validate_files(
    files: dict[str, str], origin: str = "", version: int | None = None
) -> tuple[ContentStore, list[ContentIssue]]:
    """Validate a set of content files (by relative path); return the store and every problem found."""
    store = ContentStore(origin, files=dict(files), version=version)
    issues: list[ContentIssue] = []
    for kind in _kinds.values():
        value, found = _validate_kind(store, kind)
        issues.extend(found)
        if value is not None:
            store.items[kind.name] = value
    if not issues:
        for kind in _kinds.values():
            if kind.check:
                issues.extend(kind.check(store))
    return store, sorted(set(issues))


def validate(root: Path) -> tuple[ContentStore, list[ContentIssue]]:
    """Load every registered kind from the directory `root`; return the store and every problem."""
    if not root.is_dir():
        return ContentStore(str(root)), [ContentIssue(str(root), 0, "", "content directory not found")]
    return validate_files(read_files(root), str(root))


def load(root: Path) -> ContentStore:
    """Validated content, or ContentInvalid listing every problem."""
    store, issues = validate(root)
    if issues:
        raise ContentInvalid(issues)
    return store


def json_schemas() -> dict[str, Any]:
    """JSON Schema of every kind, so that editors can check files as they are typed."""
    return {k.filename.rstrip("/"): k.model.model_json_schema() for k in _kinds.values()}


def dump_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in json_schemas().items():
        target = out_dir / (Path(filename).stem + ".schema.json")
        target.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(target)
    return written
