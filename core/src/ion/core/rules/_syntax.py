"""The rules grammar (lark, LALR) and its errors, which point at the line and column with a caret.

Lark reads the text into a parse tree; `ion.core.rules._tree` turns that tree into typed nodes.
Nothing here evaluates anything: a rule is data until `Rule.evaluate` walks it.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

from ion.core import errors

if TYPE_CHECKING:
    from lark import Lark, Token, Tree

INVALID_EXPRESSION = "InvalidExpression"
"""`rule` of a syntax error."""
UNKNOWN_NAME = "UnknownName"
"""`rule` of a name that is not one of the event's (`evnt.type`, `files.length`)."""
TYPE_MISMATCH = "TypeMismatch"
"""`rule` of operands of types that can never compare (`files.count startswith "a"`)."""
NOT_A_CONDITION = "NotACondition"
"""`rule` of a value where a true/false condition is needed (`when: data.mime`)."""
MAX_RULE_CHARS = 4000
"""Longest rule text."""

SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "PB": 1000**5,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "PiB": 1024**5,
}
"""Size units: decimal (`KB` = 1000 bytes) and binary (`KiB` = 1024 bytes)."""

_UNITS = "|".join(sorted(SIZE_UNITS, key=len, reverse=True))

GRAMMAR = rf"""
?start: expr

?expr: or_test
?or_test: and_test (_OR and_test)*
?and_test: not_test (_AND not_test)*
?not_test: _NOT not_test -> not_op
    | comparison
?comparison: operand
    | operand COMP_OP operand -> compare
    | operand _IN operand -> contains
    | operand _NOT _IN operand -> not_contains
    | operand STARTSWITH operand -> affix
    | operand ENDSWITH operand -> affix
?operand: literal
    | list
    | path
    | call
    | "(" expr ")"
path: NAME ("." NAME)* ("[" STRING "]")?
call: path "(" expr ")"
list: "[" [literal ("," literal)*] "]"
?literal: STRING -> string
    | NUMBER -> number
    | SIZE -> size
    | TRUE -> true
    | FALSE -> false
    | NULL -> null

_OR: "or"
_AND: "and"
_NOT: "not"
_IN: "in"
STARTSWITH: "startswith"
ENDSWITH: "endswith"
TRUE: "true"
FALSE: "false"
NULL: "null"
COMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
NAME: /[A-Za-z_][A-Za-z0-9_-]*/
STRING: /"(\\.|[^"\\\n])*"/ | /'(\\.|[^'\\\n])*'/
SIZE.2: /-?[0-9]+(\.[0-9]+)?({_UNITS})(?![A-Za-z0-9_])/
NUMBER: /-?[0-9]+(\.[0-9]+)?/

%import common.WS
%ignore WS
"""

_TOKEN_NAMES = {
    "COMP_OP": "a comparison (==, !=, <, <=, >, >=)",
    "STARTSWITH": "'startswith'",
    "ENDSWITH": "'endswith'",
    "_OR": "'or'",
    "_AND": "'and'",
    "_NOT": "'not'",
    "_IN": "'in'",
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "SIZE": "a size",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "NULL": "'null'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "$END": "the end",
}
_VALUE_TOKENS = {"STRING", "NUMBER", "SIZE", "TRUE", "FALSE", "NULL", "NAME", "LPAR", "LSQB"}


class RuleError(errors.ValidationError):
    """A rule that cannot be compiled: `line` and `column` (from 1) say where, `text` what.

    The message reads like a compiler's: what is wrong, where, and the line with a caret
    under the spot, e.g. ``when: unexpected ')' at column 17`` then the rule and a ``^``.
    """

    def __init__(
        self,
        message: str,
        *,
        text: str,
        line: int,
        column: int,
        field: str,
        rule: str,
        hint: str = "",
    ) -> None:
        self.text = text
        self.line = line
        self.column = column
        self.problem = message
        self.hint = hint
        where = f"line {line}, column {column}" if "\n" in text.strip("\n") else f"column {column}"
        then = f"; {hint}" if hint else ""
        super().__init__(
            f"{field}: {message} at {where}{then}\n{caret(text, line, column)}",
            field=field,
            rule=rule,
        )


def caret(text: str, line: int, column: int) -> str:
    """Return the rule's line `line` and a caret under `column` (both counted from 1)."""
    lines = text.split("\n")
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"  {shown}\n  {' ' * max(column - 1, 0)}^"


@functools.cache
def parser() -> Lark:
    """The LALR parser of the rules grammar (built once per process, on first use)."""
    from lark import Lark  # only where rules are compiled: never in a job's handler

    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str, *, field: str) -> Tree[Token]:
    """Parse rule text into lark's tree.

    Raises:
        RuleError: a syntax error, with its line and column (rule `InvalidExpression`).
    """
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if not text.strip():
        raise RuleError(
            "the rule is empty", text=text, line=1, column=1, field=field, rule=INVALID_EXPRESSION
        )
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(
            f"the rule is longer than {MAX_RULE_CHARS} characters",
            text=text,
            line=1,
            column=MAX_RULE_CHARS + 1,
            field=field,
            rule=INVALID_EXPRESSION,
        )
    hint = ""
    try:
        return parser().parse(text)
    except UnexpectedToken as err:
        line, column, problem, hint = _unexpected_token(text, err)
    except UnexpectedCharacters as err:
        line, column = err.line, err.column
        pos = err.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        problem = f"unexpected character {char!r}"
        if char == "=":
            hint = "compare with '=='"
        elif char in "&|!":
            hint = "use and, or, not"
        elif char in "\"'":
            problem = "unterminated string"
    except UnexpectedEOF as err:  # pragma: no cover - LALR reports the end as a $END token
        line, column, problem = err.line, err.column, "the rule ends too early"
    raise RuleError(
        problem,
        text=text,
        line=line,
        column=column,
        field=field,
        rule=INVALID_EXPRESSION,
        hint=hint,
    ) from None


def _unexpected_token(text: str, err: object) -> tuple[int, int, str, str]:
    from lark.exceptions import UnexpectedToken

    assert isinstance(err, UnexpectedToken)
    token = err.token
    expected = {str(name) for name in err.expected}
    if token.type == "$END":
        lines = text.rstrip().split("\n")
        line, column = len(lines), len(lines[-1]) + 1
        problem = "the rule ends too early"
    else:
        line, column = int(token.line or 1), int(token.column or 1)
        problem = f"unexpected {_shown_token(str(token.type), str(token))}"
        previous = err.token_history[-1] if err.token_history else None
        if (
            token.type == "NAME"
            and previous is not None
            and previous.type == "NUMBER"
            and previous.end_pos == token.start_pos
        ):
            units = ", ".join(SIZE_UNITS)
            return line, column, f"unknown size unit {str(token)!r}", f"use one of {units}"
    hint = ""
    if expected and expected <= _VALUE_TOKENS | {"_NOT", "RSQB"}:
        hint = "expected a value"
    elif expected:
        names = sorted({_TOKEN_NAMES.get(name, name) for name in expected})
        if len(names) <= 4:
            hint = "expected " + (", ".join(names[:-1]) + " or " if len(names) > 1 else "")
            hint += names[-1]
    return line, column, problem, hint


def _shown_token(kind: str, value: str) -> str:
    if kind in ("STRING", "NUMBER", "SIZE"):
        return f"{_TOKEN_NAMES[kind]} {value}"
    if kind == "NAME":
        return f"name {value!r}"
    return f"token {value!r}"


def string_value(token: str) -> str:
    """Return the text of a quoted string literal (JSON escapes, either quote)."""
    body = token[1:-1]
    if token[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    return str(json.loads(f'"{body}"'))


def number_value(token: str) -> float:
    """Return the value of a number literal."""
    return float(token)


def size_value(token: str) -> float:
    """Return the bytes a size literal (`1GiB`, `500MB`, `1.5kB`) stands for."""
    for unit in sorted(SIZE_UNITS, key=len, reverse=True):
        if token.endswith(unit):
            return float(token[: -len(unit)]) * SIZE_UNITS[unit]
    raise ValueError(f"not a size: {token!r}")  # pragma: no cover - the lexer admits sizes only
