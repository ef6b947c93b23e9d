"""Dispatch rules: a small, safe expression language over one event (`when:` and `routes:`).

A rule such as ``files.size > 1GiB or data.mime startswith "video/"`` is parsed by lark (an
LALR grammar, `GRAMMAR`), built into typed nodes and type-checked when a module is created or a
pipeline file is loaded, so a bad rule is refused with its line and column and a caret under
the spot. It is evaluated by walking those nodes over the event's facts (`Facts`): nothing is
ever `eval`ed. The grammar and every operator are in docs/choosing-where-jobs-run.md.

Specs keep rules as text (`ModuleSpec.when`, `Route.when`) so a job's handler never parses one;
`compile_rule` compiles a text once per process and `Rule` is the compiled form (also usable as a
pydantic field type: validated from text, serialised back to it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from ion.core.rules._syntax import (
    GRAMMAR,
    INVALID_EXPRESSION,
    MAX_RULE_CHARS,
    NOT_A_CONDITION,
    SIZE_UNITS,
    TYPE_MISMATCH,
    UNKNOWN_NAME,
    RuleError,
    parse,
)
from ion.core.rules._tree import KNOWN_NAMES, Builder, Facts, FileFact, Kind, Need, Node, _Env

__all__ = [
    "GRAMMAR",
    "INVALID_EXPRESSION",
    "KNOWN_NAMES",
    "MAX_RULE_CHARS",
    "NOT_A_CONDITION",
    "SIZE_UNITS",
    "TYPE_MISMATCH",
    "UNKNOWN_NAME",
    "Facts",
    "FileFact",
    "Kind",
    "Need",
    "Rule",
    "RuleError",
    "Verdict",
    "check_rule",
    "compile_rule",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A rule's answer for one event, and notes on what could not be compared and why."""

    matched: bool
    notes: tuple[str, ...] = ()
    """E.g. `data.mime is missing`, `data.count is 'many', not a number`."""

    def explain(self) -> str:
        """The notes in one line ('' if none)."""
        return "; ".join(dict.fromkeys(self.notes))


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule: its text, its checked tree and what it reads of an event."""

    source: str
    root: Node = field(repr=False, compare=False)
    needs: frozenset[Need] = field(default=frozenset(), compare=False)

    def evaluate(self, facts: Facts) -> Verdict:
        """Return whether the event matches; never raises for any event's facts."""
        notes: list[str] = []
        matched = self.root.value(_Env(facts=facts, notes=notes)) is True
        return Verdict(matched=matched, notes=tuple(notes))

    def __str__(self) -> str:
        return self.source

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """As a pydantic field: text in (compiled, errors as `value_error`), text out."""

        def validate(value: Rule | str) -> Rule:
            if isinstance(value, Rule):
                return value
            try:
                return compile_rule(value)
            except RuleError as err:
                raise ValueError(str(err).removeprefix("when: ")) from err

        return core_schema.no_info_plain_validator_function(
            validate,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda rule: rule.source, when_used="always"
            ),
        )


@functools.lru_cache(maxsize=1024)
def compile_rule(text: str, *, field: str = "when") -> Rule:
    """Compile rule text (cached per text); `field` names it in errors (`routes.0.when`).

    Raises:
        RuleError: a syntax error, an unknown name, operands that never compare, or a value
            where a condition is needed; with `.line`, `.column` and `.rule`.
    """
    tree = parse(text, field=field)
    root = Builder(text=text, field=field).condition(tree)
    return Rule(text, root, root.needs())


def check_rule(text: str, *, field: str = "when") -> str:
    """Return `text` if it compiles (for validators), else raise `RuleError`."""
    compile_rule(text, field=field)
    return text
