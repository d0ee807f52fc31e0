"""The one mechanism by which a domain declares a kind of content: its files and its schema.

Files are YAML, parsed with the line of every value kept, so that every problem names the file,
the line and the field. A domain registers a kind with a pydantic model (the schema) and, if it
needs one, a check across kinds (a reward naming an unknown badge, say).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass
class ContentKind:
    name: str
    filename: str  # relative to the content dir
    model: type[BaseModel]
    required: bool = False
    check: CrossCheck | None = None


_kinds: dict[str, ContentKind] = {}


def register_kind(kind: ContentKind) -> ContentKind:
    _kinds[kind.name] = kind
    return kind


def kinds() -> dict[str, ContentKind]:
    return dict(_kinds)


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
    """Validated content, by kind name."""

    root: Path
    items: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.items.get(name)


def _validate_kind(root: Path, kind: ContentKind) -> tuple[Any, list[ContentIssue]]:
    path = root / kind.filename
    rel = str(path)
    if not path.exists():
        if kind.required:
            return None, [ContentIssue(rel, 0, "", "file is missing")]
        return kind.model.model_validate({}), []
    try:
        doc = parse_yaml(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        return None, [ContentIssue(rel, line, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    data = doc.data if doc.data is not None else {}
    try:
        return kind.model.model_validate(data), []
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            issues.append(ContentIssue(rel, doc.line_of(loc), ".".join(str(p) for p in loc), err["msg"]))
        return None, issues


def validate(root: Path) -> tuple[ContentStore, list[ContentIssue]]:
    """Load every registered kind from `root`; return the store and every problem found."""
    store = ContentStore(root)
    issues: list[ContentIssue] = []
    if not root.is_dir():
        return store, [ContentIssue(str(root), 0, "", "content directory not found")]
    for kind in _kinds.values():
        value, found = _validate_kind(root, kind)
        issues.extend(found)
        if value is not None:
            store.items[kind.name] = value
    if not issues:
        for kind in _kinds.values():
            if kind.check:
                issues.extend(kind.check(store))
    return store, sorted(issues)


def load(root: Path) -> ContentStore:
    """Validated content, or ContentInvalid listing every problem."""
    store, issues = validate(root)
    if issues:
        raise ContentInvalid(issues)
    return store


def json_schemas() -> dict[str, Any]:
    """JSON Schema of every kind, so that editors can check files as they are typed."""
    return {k.filename: k.model.model_json_schema() for k in _kinds.values()}


def dump_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in json_schemas().items():
        target = out_dir / (Path(filename).stem + ".schema.json")
        target.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(target)
    return written
