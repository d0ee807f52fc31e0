"""Event filters in content files: a small, safe condition language compiled to closures.

Community managers narrow a quest goal to some member events by their properties:

    where: "channel == 'online' and amount >= 20"
    where: "category in ['shoes', 'bags'] and not (address.city == 'Oslo' or gift == true)"
    where: {channel: online, category: [shoes, bags]}    # shorthand: == for a scalar, in for a list

Grammar (keywords are case-sensitive and lower case):

    expr     := or_expr
    or_expr  := and_expr ('or' and_expr)*
    and_expr := not_expr ('and' not_expr)*
    not_expr := 'not' not_expr | atom
    atom     := '(' expr ')' | NAME cmp_op value | NAME 'in' list | NAME 'not' 'in' list
    cmp_op   := '==' | '!=' | '<' | '<=' | '>' | '>='
    value    := STRING | NUMBER | 'true' | 'false'
    list     := '[' value (',' value)* ','? ']'
    NAME     := [A-Za-z_][A-Za-z0-9_]* ('.' [A-Za-z_][A-Za-z0-9_]*)*
    STRING   := '...' or "...", where \\\\ \\' \\" are the only escapes
    NUMBER   := '-'? digits ('.' digits)?            (an int without '.', a float with it)

`and`, `or`, `not`, `in`, `true` and `false` cannot be property names. Whitespace (spaces, tabs,
newlines) separates tokens anywhere. Text that is empty or only whitespace, and None, match every event.

Semantics:

- `address.city` looks up `city` inside the dict under `address`. A property that is missing, or null
  (None), or has a non-dict on its dotted path, makes every comparison on it false, including `!=`
  and `not in`; `not` then negates normally, so `not (coupon == 'X')` matches an event without coupon.
- Numbers (int and float; a boolean is not a number) compare with numbers, strings with strings
  (by code point, case-sensitive), and booleans only with `==` / `!=` against true or false (an
  ordered comparison against true or false is rejected when the filter is compiled).
- A present property of another type than the literal: `==` and the ordered comparisons are false,
  `!=` is true. `in` / `not in` apply the same equality to each element, so 1 in [1.0] is true and
  a boolean true in [1] is false; `not in` is true for a present property of another type.
- Limits: at most 1,000 characters, 20 levels of nesting (each '(' and each 'not' is one level),
  200 values in a list; a list is never empty; nothing may follow a complete expression.

The mapping form `{key: scalar, key: [scalars], ...}` means `key == scalar and key in [scalars] ...`;
its `Where.source` is that condition written out in the text form.

Errors are `WhereError`s with a sentence an author can act on (what was expected, what was found)
and the 1-based column in the text (0 for the mapping form). The text is tokenized and parsed once by
recursive descent (never eval, exec or the ast module) into nested closures, so `Where.matches`
neither parses nor allocates.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

MAX_LENGTH = 1_000
MAX_DEPTH = 20
MAX_LIST = 200

Scalar = str | int | float | bool
Test = Callable[[dict[str, Any]], bool]

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset("0123456789")
_NAME_CHARS = _NAME_START | _DIGITS
_ESCAPABLE = ("\\", "'", '"')
_OPERATOR_HINTS = {
    "=": "use '==' to compare",
    "!": "use '!=' to compare, or 'not' to negate",
    "&": "use 'and'",
    "|": "use 'or'",
}
_HOW_TO_COMPARE = "; compare with '==', '!=', '<', '<=', '>', '>=', 'in' or 'not in'"


class WhereError(ValueError):
    """A filter that cannot be compiled: `message` says what to fix, `column` where (1-based; 0 for
    the mapping form)."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message, column)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return f"{self.message} (column {self.column})" if self.column else self.message


@dataclass(frozen=True)
class Ref:
    """One comparison in a filter: the property it reads, the operator and the literal(s)."""

    property: str
    op: str
    values: tuple[Scalar, ...]


class Where:
    """A compiled filter. `matches(properties)` says whether an event's properties pass it.

    `matches` is the compiled closure itself, stored on the instance, so a call costs no method
    binding on top of the comparisons.
    """

    __slots__ = ("matches", "refs", "source")

    source: str
    refs: tuple[Ref, ...]
    matches: Test

    def __init__(self, source: str, refs: tuple[Ref, ...], matches: Test) -> None:
        self.source = source
        self.refs = refs
        self.matches = matches

    def __repr__(self) -> str:
        return f"Where({self.source!r})"


def compile_where(source: str | Mapping[str, Any] | None) -> Where:
    """Compile a filter from content: text, the mapping shorthand, or None (matches everything)."""
    if source is None:
        return Where("", (), _everything)
    if isinstance(source, str):
        return _compile_text(source)
    if isinstance(source, Mapping):
        return _compile_text(_mapping_text(source))
    raise WhereError(f"expected a filter as text or a mapping, found {type(source).__name__}", 0)


def check_where(source: str | Mapping[str, Any] | None) -> str | Mapping[str, Any] | None:
    """A content model's validator: the filter unchanged, or a ValueError saying where it breaks."""
    try:
        compile_where(source)
    except WhereError as exc:
        at = f" (column {exc.column})" if exc.column else ""
        raise ValueError(f"{exc.message}{at}") from None
    return source


# --- matching -----------------------------------------------------------------------------------


def _everything(properties: dict[str, Any]) -> bool:
    return True


def _descend(value: Any, rest: tuple[str, ...]) -> Any:
    """The value under the remaining parts of a dotted name; None when the path leaves the dicts."""
    for key in rest:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(path: tuple[str, ...], op: str, literal: Scalar) -> Test:
    """One `NAME op value`. Exact built-in types take the fast branch; subclasses the isinstance one."""
    head, rest = path[0], path[1:]
    differ = op == "!="  # the answer for a present property of another type

    if isinstance(literal, bool):  # only == and != get here
        same = not differ

        def test_boolean(properties: dict[str, Any]) -> bool:
            value = properties.get(head)
            if rest:
                value = _descend(value, rest)
            if value is literal:
                return same
            return differ and value is not None

        return test_boolean

    cmp = getattr(operator, {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}[op])

    if isinstance(literal, str):

        def test_string(properties: dict[str, Any]) -> bool:
            value = properties.get(head)
            if rest:
                value = _descend(value, rest)
            if type(value) is str:
                return cmp(value, literal)
            if value is None:
                return False
            return cmp(value, literal) if isinstance(value, str) else differ

        return test_string

    def test_number(properties: dict[str, Any]) -> bool:
        value = properties.get(head)
        if rest:
            value = _descend(value, rest)
        kind = type(value)
        if kind is int or kind is float:
            return cmp(value, literal)
        if value is None:
            return False
        return cmp(value, literal) if _is_number(value) else differ

    return test_number


def _member(path: tuple[str, ...], values: tuple[Scalar, ...], negate: bool) -> Test:
    """`NAME in list` / `NAME not in list`: one set per type, so membership is one hash lookup."""
    head, rest = path[0], path[1:]
    strings = frozenset(v for v in values if isinstance(v, str))
    numbers = frozenset(v for v in values if _is_number(v))
    booleans = frozenset(v for v in values if isinstance(v, bool))

    def test_member(properties: dict[str, Any]) -> bool:
        value = properties.get(head)
        if rest:
            value = _descend(value, rest)
        kind = type(value)
        if kind is str:
            found = value in strings
        elif kind is int or kind is float:
            found = value in numbers
        elif kind is bool:
            found = value in booleans
        elif value is None:
            return False
        elif isinstance(value, str):
            found = value in strings
        elif _is_number(value):
            found = value in numbers
        else:
            found = False
        return found is not negate

    return test_member


def _all(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda properties: first(properties) and second(properties)
    frozen = tuple(tests)

    def test_all(properties: dict[str, Any]) -> bool:
        for test in frozen:
            if not test(properties):
                return False
        return True

    return test_all


def _any(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda properties: first(properties) or second(properties)
    frozen = tuple(tests)

    def test_any(properties: dict[str, Any]) -> bool:
        for test in frozen:
            if test(properties):
                return True
        return False

    return test_any


def _negate(test: Test) -> Test:
    return lambda properties: not test(properties)


# --- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "string", "number", "end", or the text of an operator, bracket or keyword
    text: str  # as written
    column: int
    value: Any = None  # the literal of a string, number, true or false


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _show(token: _Token) -> str:
    """A token as the error messages name it."""
    if token.kind == "end":
        return "end of text"
    if token.kind == "string":
        return _shorten(token.text)  # already in quotes
    return f"'{_shorten(token.text)}'"


def _show_char(source: str, index: int) -> str:
    return f"{source[index]!r}" if index < len(source) else "end of text"


class _Lexer:
    """Hands out one token at a time, so the first problem in reading order is the one reported."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0

    def next(self) -> _Token:
        src, n = self.source, len(self.source)
        i = self.pos
        while i < n and src[i].isspace():
            i += 1
        if i >= n:
            self.pos = n
            return _Token("end", "", n + 1)
        c = src[i]
        if c in _NAME_START:
            token, self.pos = self._name(i)
        elif c in _DIGITS or c == "-":
            token, self.pos = self._number(i)
        elif c in "'\"":
            token, self.pos = self._string(i)
        elif src.startswith(("==", "!=", "<=", ">="), i):
            token, self.pos = _Token(src[i : i + 2], src[i : i + 2], i + 1), i + 2
        elif c in "<>()[],":
            token, self.pos = _Token(c, c, i + 1), i + 1
        elif c in _OPERATOR_HINTS:
            written = src[i : i + 2] if src.startswith(c * 2, i) and c in "&|" else c
            raise WhereError(f"'{written}' is not an operator; {_OPERATOR_HINTS[c]}", i + 1)
        else:
            raise WhereError(f"unexpected character {c!r}", i + 1)
        return token

    def _name(self, start: int) -> tuple[_Token, int]:
        src, n = self.source, len(self.source)
        j = start
        while True:
            while j < n and src[j] in _NAME_CHARS:
                j += 1
            if j < n and src[j] == ".":
                if j + 1 < n and src[j + 1] in _NAME_START:
                    j += 1
                    continue
                raise WhereError(
                    f"expected a property name after '{_shorten(src[start : j + 1])}', "
                    f"found {_show_char(src, j + 1)}",
                    j + 2,
                )
            break
        text = src[start:j]
        kind = text if text in KEYWORDS else "name"
        value = {"true": True, "false": False}.get(text)
        return _Token(kind, text, start + 1, value), j

    def _number(self, start: int) -> tuple[_Token, int]:
        src, n = self.source, len(self.source)
        j = start + 1 if src[start] == "-" else start
        if j >= n or src[j] not in _DIGITS:
            raise WhereError(f"expected a digit after '-', found {_show_char(src, j)}", j + 1)
        while j < n and src[j] in _DIGITS:
            j += 1
        is_float = j < n and src[j] == "."
        if is_float:
            j += 1
            if j >= n or src[j] not in _DIGITS:
                raise WhereError(
                    f"expected a digit after '{_shorten(src[start:j])}', found {_show_char(src, j)}", j + 1
                )
            while j < n and src[j] in _DIGITS:
                j += 1
        text = src[start:j]
        if j < n and (src[j] in _NAME_CHARS or src[j] == "."):
            raise WhereError(
                f"expected a space or an operator after the number {_shorten(text)}, "
                f"found {_show_char(src, j)}",
                j + 1,
            )
        value: int | float = float(text) if is_float else int(text)
        if isinstance(value, float) and math.isinf(value):
            raise WhereError(f"the number {_shorten(text)} is too large", start + 1)
        return _Token("number", text, start + 1, value), j

    def _string(self, start: int) -> tuple[_Token, int]:
        src, n = self.source, len(self.source)
        quote = src[start]
        chars: list[str] = []
        j = start + 1
        while True:
            if j >= n:
                raise WhereError(
                    f"expected a closing {quote} for the string that starts here, found end of text",
                    start + 1,
                )
            c = src[j]
            if c == quote:
                break
            if c == "\\":
                if j + 1 < n and src[j + 1] in _ESCAPABLE:
                    chars.append(src[j + 1])
                    j += 2
                    continue
                if j + 1 < n:
                    raise WhereError(
                        f"expected \\\\, \\' or \\\" (the only escapes) in a string, found '\\{src[j + 1]}'; "
                        "write a backslash itself as \\\\",
                        j + 1,
                    )
            chars.append(c)
            j += 1
        return _Token("string", src[start : j + 1], start + 1, "".join(chars)), j + 1


# --- parsing ------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the grammar in the module docstring, building closures as it goes."""

    def __init__(self, source: str) -> None:
        self.lexer = _Lexer(source)
        self.token = self.lexer.next()
        self.previous: _Token | None = None
        self.depth = 0
        self.refs: list[Ref] = []

    def parse(self) -> Test:
        test = self.or_expr()
        if self.token.kind != "end":
            self.fail("'and', 'or' or end of text", self.keyword_case_hint())
        return test

    # helpers

    def advance(self) -> _Token:
        token = self.token
        self.previous = token
        self.token = self.lexer.next()
        return token

    def fail(self, expected: str, hint: str = "") -> NoReturn:
        after = f" after {_show(self.previous)}" if self.previous is not None else ""
        raise WhereError(f"expected {expected}{after}, found {_show(self.token)}{hint}", self.token.column)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WhereError(
                f"expected at most {MAX_DEPTH} levels of '(' and 'not', found more; simplify the filter",
                self.token.column,
            )

    def keyword_case_hint(self) -> str:
        text = self.token.text
        if self.token.kind == "name" and text.lower() in KEYWORDS:
            return f"; keywords are lower case: write '{text.lower()}'"
        return ""

    # grammar

    def or_expr(self) -> Test:
        tests = [self.and_expr()]
        while self.token.kind == "or":
            self.advance()
            tests.append(self.and_expr())
        return _any(tests)

    def and_expr(self) -> Test:
        tests = [self.not_expr()]
        while self.token.kind == "and":
            self.advance()
            tests.append(self.not_expr())
        return _all(tests)

    def not_expr(self) -> Test:
        if self.token.kind != "not":
            return self.atom()
        self.enter()
        self.advance()
        test = _negate(self.not_expr())
        self.depth -= 1
        return test

    def atom(self) -> Test:
        token = self.token
        if token.kind == "(":
            self.enter()
            self.advance()
            test = self.or_expr()
            if self.token.kind != ")":
                self.fail("'and', 'or' or ')'", f"; the '(' at column {token.column} is not closed")
            self.advance()
            self.depth -= 1
            return test
        if token.kind != "name":
            if token.kind in KEYWORDS:
                hint = f"; '{token.text}' is a keyword and cannot be a property name"
            elif token.kind == "end":
                hint = ""
            else:
                hint = "; a condition starts with a property name, 'not' or '('"
            self.fail("a condition", hint)
        name = self.advance()
        path = tuple(name.text.split("."))
        op = self.token
        if op.kind in COMPARISONS:
            self.advance()
            literal = self.value()
            if isinstance(literal, bool) and op.kind not in ("==", "!="):
                raise WhereError(
                    f"expected '==' or '!=' before {str(literal).lower()}, found '{op.kind}'; "
                    "true and false have no order",
                    op.column,
                )
            self.refs.append(Ref(name.text, op.kind, (literal,)))
            return _compare(path, op.kind, literal)
        if op.kind == "in":
            self.advance()
            values = self.list()
            self.refs.append(Ref(name.text, "in", values))
            return _member(path, values, negate=False)
        if op.kind == "not":
            self.advance()
            if self.token.kind != "in":
                self.fail("'in'", "; write 'not in' to exclude values, or put 'not' before the property")
            self.advance()
            values = self.list()
            self.refs.append(Ref(name.text, "not in", values))
            return _member(path, values, negate=True)
        self.fail("a comparison", self.keyword_case_hint() or _HOW_TO_COMPARE)

    def value(self) -> Scalar:
        token = self.token
        if token.kind in ("string", "number", "true", "false"):
            self.advance()
            return token.value
        hint = ""
        if token.kind == "name" and token.text.lower() in ("true", "false"):
            hint = f"; write booleans in lower case: {token.text.lower()}"
        elif token.kind == "name":
            hint = f"; put text in quotes: '{_shorten(token.text)}'"
        elif token.kind == "[":
            hint = "; compare with a list using 'in'"
        elif token.kind != "end":
            hint = "; a value is a quoted string, a number, true or false"
        self.fail("a value", hint)

    def list(self) -> tuple[Scalar, ...]:
        if self.token.kind != "[":
            self.fail("a list", "; write the values in brackets: ['a', 'b']")
        self.advance()
        if self.token.kind == "]":
            self.fail("a value", "; a list needs at least one value")
        values: list[Scalar] = []
        while True:
            if len(values) == MAX_LIST:
                raise WhereError(
                    f"expected at most {MAX_LIST} values in a list, found more", self.token.column
                )
            values.append(self.value())
            if self.token.kind == ",":
                self.advance()
                if self.token.kind == "]":
                    break
            elif self.token.kind == "]":
                break
            else:
                self.fail("',' or ']'")
        self.advance()
        return tuple(values)


def _compile_text(source: str) -> Where:
    if len(source) > MAX_LENGTH:
        raise WhereError(
            f"expected at most {MAX_LENGTH:,} characters, found {len(source):,}; shorten the filter",
            MAX_LENGTH + 1,
        )
    if not source.strip():
        return Where(source, (), _everything)
    parser = _Parser(source)
    test = parser.parse()
    return Where(source, tuple(dict.fromkeys(parser.refs)), test)


# --- the mapping form ---------------------------------------------------------------------------


def _mapping_text(mapping: Mapping[Any, Any]) -> str:
    """The text form of `{key: scalar, key: [scalars]}`, checked key by key (errors at column 0)."""
    parts = []
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise WhereError(
                f"expected a property name, found {key!r}; put the name in quotes if YAML reads it "
                "as something else",
                0,
            )
        if not _NAME_RE.fullmatch(key):
            raise WhereError(
                f"expected a property name, found '{_shorten(key)}'; use letters, digits and '_', "
                "with '.' between the parts of a nested name",
                0,
            )
        if key in KEYWORDS:
            raise WhereError(f"expected a property name, found '{key}', a keyword", 0)
        if isinstance(value, list | tuple):
            if not value:
                raise WhereError(f"expected at least one value for '{key}', found an empty list", 0)
            if len(value) > MAX_LIST:
                raise WhereError(f"expected at most {MAX_LIST} values for '{key}', found {len(value)}", 0)
            items = ", ".join(_literal_text(key, item, "in the list") for item in value)
            parts.append(f"{key} in [{items}]")
        else:
            parts.append(f"{key} == {_literal_text(key, value, 'as the value')}")
    text = " and ".join(parts)
    if len(text) > MAX_LENGTH:
        raise WhereError(
            f"expected at most {MAX_LENGTH:,} characters when written out, found {len(text):,}; "
            "shorten the filter",
            0,
        )
    return text


def _literal_text(key: str, value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WhereError(f"expected a finite number for '{key}', found {value!r}", 0)
        text = repr(float(value))
        if "e" in text:
            text = format(Decimal(text), "f")
        return text if "." in text else text + ".0"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        raise WhereError(
            f"expected text, a number, true or false for '{key}', found a mapping; "
            f"name a nested property with a dot, e.g. '{key}.name'",
            0,
        )
    found = "nothing" if value is None else "a list" if isinstance(value, list | tuple) else repr(value)
    raise WhereError(
        f"expected text, a number, true or false {where} for '{key}', found {_shorten(found)}", 0
    )
