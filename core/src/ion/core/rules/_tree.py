"""Typed rule nodes: built from lark's tree, type-checked once, then evaluated by walking them.

Every name has a known type (`event.type` is text, `files.count` a number, `data.<key>` a data
value: text that may be missing and reads as a number where compared with one), so operands that
can never compare are refused when the rule is compiled, with the column of the operand. What
only the event can tell (a missing key, a data value that is not a number) makes the comparison
false and leaves a note saying why.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, TypedDict

from ion.core.rules import _syntax
from ion.core.rules._syntax import RuleError

if TYPE_CHECKING:
    from lark import Token, Tree

Value = str | float | bool | tuple["Value", ...] | None
"""A value while a rule is evaluated; None is a missing data key (`null`)."""


class Kind(StrEnum):
    """The static type of a rule's operand."""

    TEXT = "text"
    NUMBER = "a number"
    BOOL = "true or false"
    LIST = "a list"
    NULL = "null"
    DATA = "a data value"
    """Text from the event's data; missing keys are null; reads as a number beside one."""


class Need(StrEnum):
    """What a rule reads beyond the event itself, so a dispatcher fetches only that."""

    DATA = "data"
    """The event's data pairs (its eventMeta document, or the bus event's own data)."""
    FILES = "files"
    """The event's file names."""
    SIZES = "sizes"
    """The size of each file (one blob store look-up per file)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFact:
    """One input file of an event: its name (relative path) and size in bytes, if known."""

    name: str
    size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What a rule may read of one event."""

    event_type: str
    data: Mapping[str, str] = field(default_factory=dict)
    files: Sequence[FileFact] = ()


@dataclass(kw_only=True)
class _Env:
    facts: Facts
    notes: list[str]
    file: FileFact | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Node(ABC):
    """A sub-expression: its static kind and where it is in the rule's text."""

    kind: Kind
    text: str
    """The sub-expression as written (for notes and errors)."""
    line: int
    column: int

    @abstractmethod
    def value(self, env: _Env) -> Value:
        """Evaluate the sub-expression."""

    def needs(self) -> frozenset[Need]:
        """What the sub-expression reads beyond the event type."""
        return frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Literal(Node):
    """A string, number, size, true, false or null, or a list of them."""

    literal: Value

    def value(self, env: _Env) -> Value:
        """The literal."""
        return self.literal


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOf(Node):
    """`[a, b, c]`: literals only."""

    items: tuple[Literal, ...]

    def value(self, env: _Env) -> Value:
        """The items' values."""
        return tuple(item.literal for item in self.items)


@dataclass(frozen=True, slots=True, kw_only=True)
class Name(Node):
    """A name over the event: `event.type`, `data.<key>`, `files.count|names|size`, `file.*`."""

    path: str
    key: str = ""

    def value(self, env: _Env) -> Value:
        """Read the name from the event's facts."""
        facts = env.facts
        match self.path:
            case "event.type":
                return facts.event_type
            case "data":
                return facts.data.get(self.key)
            case "files.count":
                return float(len(facts.files))
            case "files.names":
                return tuple(f.name for f in facts.files)
            case "files.size":
                unknown = [f.name for f in facts.files if f.size is None]
                if unknown:
                    env.notes.append(f"the size of {unknown[0]!r} is unknown; counted as 0")
                return float(sum(f.size or 0 for f in facts.files))
            case "file.name":
                return env.file.name if env.file else None
            case "file.size":
                if env.file is None or env.file.size is None:
                    env.notes.append(
                        f"the size of {env.file.name if env.file else '?'!r} is unknown"
                    )
                    return None
                return float(env.file.size)
        raise AssertionError(self.path)  # pragma: no cover - names are checked when compiled

    def needs(self) -> frozenset[Need]:
        """Data for `data.*`, names for `files.*`, sizes for `files.size` and `file.size`."""
        if self.path == "data":
            return frozenset({Need.DATA})
        if self.path in ("files.size", "file.size"):
            return frozenset({Need.FILES, Need.SIZES})
        if self.path.startswith("files."):
            return frozenset({Need.FILES})
        return frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class AnyFile(Node):
    """`files.any(<condition over file.name and file.size>)`: some input file matches."""

    condition: Node

    def value(self, env: _Env) -> Value:
        """True if the condition holds for at least one file."""
        for fact in env.facts.files:
            inner = _Env(facts=env.facts, notes=env.notes, file=fact)
            if self.condition.value(inner) is True:
                return True
        return False

    def needs(self) -> frozenset[Need]:
        """The files, and whatever the condition reads."""
        return frozenset({Need.FILES}) | self.condition.needs()


@dataclass(frozen=True, slots=True, kw_only=True)
class Not(Node):
    """`not x`."""

    operand: Node

    def value(self, env: _Env) -> Value:
        """The negation."""
        return self.operand.value(env) is not True

    def needs(self) -> frozenset[Need]:
        """The operand's needs."""
        return self.operand.needs()


@dataclass(frozen=True, slots=True, kw_only=True)
class Logic(Node):
    """`a and b and ...` or `a or b or ...`, evaluated left to right, short-circuit."""

    op: str
    operands: tuple[Node, ...]

    def value(self, env: _Env) -> Value:
        """The conjunction or disjunction."""
        if self.op == "and":
            return all(o.value(env) is True for o in self.operands)
        return any(o.value(env) is True for o in self.operands)

    def needs(self) -> frozenset[Need]:
        """Every operand's needs."""
        return frozenset().union(*(o.needs() for o in self.operands))


@dataclass(frozen=True, slots=True, kw_only=True)
class Binary(Node):
    """A comparison, `in`, `not in`, `startswith` or `endswith`."""

    op: str
    left: Node
    right: Node

    def value(self, env: _Env) -> Value:
        """True or false; false with a note where the event's values cannot be compared."""
        return _binary(self, self.left.value(env), self.right.value(env), env)

    def needs(self) -> frozenset[Need]:
        """Both operands' needs."""
        return self.left.needs() | self.right.needs()


# --- evaluation ---------------------------------------------------------------------------


def _as_number(node: Node, value: Value, env: _Env) -> float | None:
    """A data value read as a number (`12`, `1.5`, or a size such as `2GiB`), else a note."""
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text) if math.isfinite(float(text)) else None
        except ValueError:
            pass
        for unit in sorted(_syntax.SIZE_UNITS, key=len, reverse=True):
            if text.endswith(unit):
                try:
                    return float(text[: -len(unit)].strip()) * _syntax.SIZE_UNITS[unit]
                except ValueError:
                    break
        env.notes.append(f"{node.text} is {value!r}, not a number")
    return None


def _missing(node: Node, value: Value, env: _Env) -> bool:
    if value is None:
        env.notes.append(f"{node.text} is missing")
        return True
    return False


def _operands(b: Binary, left: Value, right: Value, env: _Env) -> tuple[Value, Value] | None:
    """Bring a data value to a number beside a number; None (with a note) if it is not one."""
    if b.left.kind == Kind.NUMBER and b.right.kind == Kind.DATA and right is not None:
        n = _as_number(b.right, right, env)
        return None if n is None else (left, n)
    if b.right.kind == Kind.NUMBER and b.left.kind == Kind.DATA and left is not None:
        n = _as_number(b.left, left, env)
        return None if n is None else (n, right)
    return left, right


def _equal(b: Binary, left: Value, right: Value, env: _Env) -> bool | None:
    if left is None or right is None:
        if left is None and b.left.kind != Kind.NULL and right is not None:
            env.notes.append(f"{b.left.text} is missing")
        if right is None and b.right.kind != Kind.NULL and left is not None:
            env.notes.append(f"{b.right.text} is missing")
        return left is None and right is None
    pair = _operands(b, left, right, env)
    return None if pair is None else pair[0] == pair[1]


_ORDER: dict[str, Callable[[float | str, float | str], bool]] = {
    "<": lambda a, b: a < b,  # type: ignore[operator]  # same-typed by the checks before
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _binary(b: Binary, left: Value, right: Value, env: _Env) -> bool:
    op = b.op
    if op in ("==", "!="):
        same = _equal(b, left, right, env)
        if same is None:
            return False  # a data value that is not a number compares neither way
        return same if op == "==" else not same
    if _missing(b.left, left, env) or _missing(b.right, right, env):
        return False
    if op in _ORDER:
        pair = _operands(b, left, right, env)
        if pair is None:
            return False
        a, c = pair
        if isinstance(a, str) and isinstance(c, str):
            return _ORDER[op](a, c)
        if isinstance(a, float) and isinstance(c, float):
            return _ORDER[op](a, c)
        env.notes.append(f"{b.text}: {a!r} and {c!r} do not compare")
        return False
    if op in ("in", "not in"):
        found = _contains(b, left, right, env)
        if found is None:
            return False
        return found if op == "in" else not found
    assert isinstance(left, str) and isinstance(right, str)
    return left.startswith(right) if op == "startswith" else left.endswith(right)


def _contains(b: Binary, left: Value, right: Value, env: _Env) -> bool | None:
    if isinstance(right, tuple):
        for item in right:
            probe = Binary(
                kind=Kind.BOOL,
                text=b.text,
                line=b.line,
                column=b.column,
                op="==",
                left=b.left,
                right=_literal_node(item, b),
            )
            if _equal(probe, left, item, _Env(facts=env.facts, notes=[])):
                return True
        return False
    if isinstance(left, str) and isinstance(right, str):
        return left in right
    env.notes.append(f"{b.text}: {left!r} is not text")
    return None


def _literal_node(item: Value, at: Node) -> Literal:
    kind = Kind.NUMBER if isinstance(item, float) else Kind.TEXT
    return Literal(kind=kind, text=repr(item), line=at.line, column=at.column, literal=item)


# --- building and type checking -------------------------------------------------------------


_NAMES = {
    "event.type": Kind.TEXT,
    "files.count": Kind.NUMBER,
    "files.names": Kind.LIST,
    "files.size": Kind.NUMBER,
}
_FILE_NAMES = {"file.name": Kind.TEXT, "file.size": Kind.NUMBER}
KNOWN_NAMES = (
    'event.type, data.<key> (or data["<key>"]), files.count, files.names, files.size,'
    " files.any(<condition on file.name, file.size>)"
)
_ORDERED = {Kind.NUMBER, Kind.TEXT, Kind.DATA}
_TEXTUAL = {Kind.TEXT, Kind.DATA}


class _At(TypedDict):
    text: str
    line: int
    column: int


@dataclass(kw_only=True)
class Builder:
    """Turns lark's tree of one rule into checked nodes."""

    text: str
    field: str
    in_any: bool = False

    def fail(self, message: str, line: int, column: int, rule: str, *, hint: str = "") -> RuleError:
        """A compile error at a spot of the rule."""
        return RuleError(
            message,
            text=self.text,
            line=line,
            column=column,
            field=self.field,
            rule=rule,
            hint=hint,
        )

    def _place(self, tree: Tree[Token] | Token) -> tuple[int, int, str]:
        from lark import Token

        if isinstance(tree, Token):
            start, end = int(tree.start_pos or 0), int(tree.end_pos or 0)
            return int(tree.line or 1), int(tree.column or 1), self.text[start:end]
        meta = tree.meta
        return meta.line, meta.column, self.text[meta.start_pos : meta.end_pos]

    def condition(self, tree: Tree[Token] | Token) -> Node:
        """Build a node that must be a condition (true or false)."""
        node = self.build(tree)
        if node.kind != Kind.BOOL:
            raise self.fail(
                f"{node.text} is {node.kind}, not a condition",
                node.line,
                node.column,
                _syntax.NOT_A_CONDITION,
                hint=f"compare it, e.g. {node.text} == ...",
            )
        return node

    def build(self, tree: Tree[Token] | Token) -> Node:
        """Build the node of a parse (sub)tree."""
        from lark import Token

        line, column, text = self._place(tree)
        at = _At(text=text, line=line, column=column)
        if isinstance(tree, Token):  # pragma: no cover - every token sits in a rule
            raise self.fail(f"unexpected {tree!s}", line, column, _syntax.INVALID_EXPRESSION)
        kids = tree.children
        match tree.data:
            case "string":
                try:
                    return Literal(kind=Kind.TEXT, literal=_syntax.string_value(str(kids[0])), **at)
                except ValueError:
                    raise self.fail(
                        "invalid escape in string", line, column, _syntax.INVALID_EXPRESSION
                    ) from None
            case "number":
                return Literal(kind=Kind.NUMBER, literal=_syntax.number_value(str(kids[0])), **at)
            case "size":
                return Literal(kind=Kind.NUMBER, literal=_syntax.size_value(str(kids[0])), **at)
            case "true" | "false":
                return Literal(kind=Kind.BOOL, literal=tree.data == "true", **at)
            case "null":
                return Literal(kind=Kind.NULL, literal=None, **at)
            case "list":
                items = tuple(self.build(k) for k in kids)
                literals = tuple(i for i in items if isinstance(i, Literal))
                kinds = {i.kind for i in literals}
                if len(kinds) > 1 or kinds & {Kind.BOOL, Kind.NULL}:
                    raise self.fail(
                        "a list holds strings or numbers, all of one kind",
                        line,
                        column,
                        _syntax.TYPE_MISMATCH,
                    )
                return ListOf(kind=Kind.LIST, items=literals, **at)
            case "path":
                return self._name(tree, **at)
            case "call":
                return self._call(tree, **at)
            case "not_op":
                return Not(kind=Kind.BOOL, operand=self.condition(kids[0]), **at)
            case "and_test" | "or_test":
                op = "and" if tree.data == "and_test" else "or"
                operands = tuple(self.condition(k) for k in kids)
                return Logic(kind=Kind.BOOL, op=op, operands=operands, **at)
            case "compare" | "affix":
                left, right = self.build(kids[0]), self.build(kids[2])
                return self._binary(str(kids[1]), left, right, at)
            case "contains" | "not_contains":
                left, right = self.build(kids[0]), self.build(kids[1])
                op = "in" if tree.data == "contains" else "not in"
                return self._binary(op, left, right, at)
        raise self.fail(  # pragma: no cover - the grammar has no other rule
            f"unexpected {tree.data}", line, column, _syntax.INVALID_EXPRESSION
        )

    def _name(self, tree: Tree[Token], *, text: str, line: int, column: int) -> Name:
        parts = [str(t) for t in tree.children if t.type == "NAME"]  # type: ignore[union-attr]
        keys = [t for t in tree.children if t.type == "STRING"]  # type: ignore[union-attr]
        path = ".".join(parts)
        at = _At(text=text, line=line, column=column)
        if parts[0] == "data" and (len(parts) > 1) != bool(keys):
            key = ".".join(parts[1:]) if len(parts) > 1 else _syntax.string_value(str(keys[0]))
            return Name(kind=Kind.DATA, path="data", key=key, **at)
        if not keys:
            if path in _NAMES:
                return Name(kind=_NAMES[path], path=path, **at)
            if path in _FILE_NAMES and self.in_any:
                return Name(kind=_FILE_NAMES[path], path=path, **at)
        hint = f"use {KNOWN_NAMES}"
        if path in _FILE_NAMES:
            hint = "file.name and file.size exist inside files.any(...) only"
        elif path.lower() in ("true", "false", "null", "none"):
            hint = "the literals are true, false and null, in lowercase"
        raise self.fail(f"unknown name {text!r}", line, column, _syntax.UNKNOWN_NAME, hint=hint)

    def _call(self, tree: Tree[Token], *, text: str, line: int, column: int) -> AnyFile:
        target, argument = tree.children
        name = self._place(target)[2]
        if name != "files.any":
            raise self.fail(
                f"unknown function {name!r}",
                line,
                column,
                _syntax.UNKNOWN_NAME,
                hint="the one function is files.any(<condition>)",
            )
        if self.in_any:
            raise self.fail("files.any(...) cannot nest", line, column, _syntax.INVALID_EXPRESSION)
        inner = Builder(text=self.text, field=self.field, in_any=True)
        condition = inner.condition(argument)
        return AnyFile(kind=Kind.BOOL, condition=condition, text=text, line=line, column=column)

    def _binary(self, op: str, left: Node, right: Node, at: _At) -> Binary:
        problem = _mismatch(op, left, right)
        if problem is not None:
            culprit, message = problem
            raise self.fail(message, culprit.line, culprit.column, _syntax.TYPE_MISMATCH)
        return Binary(kind=Kind.BOOL, op=op, left=left, right=right, **at)


def _mismatch(op: str, left: Node, right: Node) -> tuple[Node, str] | None:
    """Why `left op right` can never be evaluated (the operand to blame), or None."""

    def said(node: Node) -> str:
        return f"{node.text} is {node.kind}"

    if op in ("==", "!="):
        kinds = {left.kind, right.kind}
        if Kind.NULL in kinds:
            return None
        if Kind.LIST in kinds:
            culprit = left if left.kind == Kind.LIST else right
            return culprit, f"{said(culprit)}: test a list with 'in', not {op}"
        if left.kind == right.kind or (Kind.DATA in kinds and kinds <= _ORDERED | {Kind.DATA}):
            return None
        return right, f"{said(left)} and {said(right)}: they never compare with {op}"
    if op in _ORDER:
        for node in (left, right):
            if node.kind not in _ORDERED:
                return node, f"{said(node)}: {op} compares numbers, sizes or text"
        if {left.kind, right.kind} == {Kind.NUMBER, Kind.TEXT}:
            return right, f"{said(left)} and {said(right)}: they never compare with {op}"
        return None
    if op in ("in", "not in"):
        if right.kind == Kind.LIST:
            if isinstance(right, ListOf):
                kinds = {i.kind for i in right.items}
                if left.kind not in _ORDERED:
                    return left, f"{said(left)}: 'in' a list tests text or numbers"
                if kinds and left.kind != Kind.DATA and kinds != {left.kind}:
                    return right, f"{said(left)} but {right.text} holds {kinds.pop()} values"
                return None
            if left.kind not in _TEXTUAL:  # files.names: a list of text
                return left, f"{said(left)}: {right.text} holds file names (text)"
            return None
        if right.kind not in _TEXTUAL:
            return right, f"{said(right)}: 'in' looks in a list or in text"
        if left.kind not in _TEXTUAL:
            return left, f"{said(left)}: 'in' text looks for text"
        return None
    for node in (left, right):  # startswith, endswith
        if node.kind not in _TEXTUAL:
            return node, f"{said(node)}: {op} works on text"
    return None
