"""The dispatch rules language: every operator and unit, bad rules with their columns, types
refused at compile time, missing keys and data values that are not numbers, the spec fields,
and `ion.core.routing.decide` over a module's `when` and `routes`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from ion.core import ModuleSpec, PipelineSpec, Resources, errors, rules
from ion.core.routing import decide
from ion.core.rules import Facts, FileFact, Need, RuleError, compile_rule

ROOT = Path(__file__).resolve().parents[2]

EVENT = Facts(
    event_type="media.ingested",
    data={"mime": "video/mp4", "count": "12", "size": "2GiB", "word": "many", "tag": "b"},
    files=[
        FileFact(name="clip.mp4", size=3 * 1024**3),
        FileFact(name="notes/readme.txt", size=100),
    ],
)


def matches(text: str, facts: Facts = EVENT) -> bool:
    return compile_rule(text).evaluate(facts).matched


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('event.type == "media.ingested"', True),
        ('event.type != "media.ingested"', False),
        ('event.type == "other"', False),
        ('event.type != "other"', True),
        ("files.count == 2", True),
        ("files.count < 2", False),
        ("files.count <= 2", True),
        ("files.count > 1", True),
        ("files.count >= 3", False),
        ('"b" < "c"', True),
        ('data.mime > "text"', True),  # text orders as text: "video/..." after "text"
        ("true", True),
        ("false", False),
        ("true and false", False),
        ("true and true and true", True),
        ("false or true", True),
        ("false or false", False),
        ("not false", True),
        ("not not true", True),
        ("not (true and false)", True),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ('data.tag in ["a", "b"]', True),
        ('data.tag in ["a", "c"]', False),
        ('data.tag not in ["a", "c"]', True),
        ("data.count in [1, 12]", True),  # a data value beside numbers reads as a number
        ("files.count in [1, 3]", False),
        ('"video" in data.mime', True),  # substring
        ('"audio" in data.mime', False),
        ('"audio" not in data.mime', True),
        ('"clip.mp4" in files.names', True),
        ('"other.mp4" in files.names', False),
        ('data.mime startswith "video/"', True),
        ('data.mime startswith "image/"', False),
        ('data.mime endswith "/mp4"', True),
        ('event.type endswith ".ingested"', True),
        ('files.any(file.name endswith ".mp4")', True),
        ('files.any(file.name endswith ".mov")', False),
        ('files.any(file.name startswith "notes/" and file.size < 1KiB)', True),
        ("files.any(file.size > 10GiB)", False),
        ("data.count > 10", True),
        ("data.count == 12", True),
        ("data.count == 12.0", True),
        ("data.size > 1GiB", True),  # a data value with a unit reads as a size
        ('data["mime"] == "video/mp4"', True),
        ("data.missing == null", True),
        ("data.mime == null", False),
        ("data.mime != null", True),
        ('data.missing != "x"', True),
        ("files.count > -1", True),
    ],
)
def test_every_operator(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("size", "bytes_"),
    [
        ("1B", 1),
        ("10KB", 10_000),
        ("10kB", 10_000),
        ("5MB", 5_000_000),
        ("500MB", 500_000_000),
        ("1GB", 1_000_000_000),
        ("2TB", 2 * 10**12),
        ("1PB", 10**15),
        ("10KiB", 10 * 1024),
        ("3MiB", 3 * 1024**2),
        ("1GiB", 1024**3),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("2TiB", 2 * 1024**4),
        ("1PiB", 1024**5),
    ],
)
def test_every_size_unit(size: str, bytes_: int) -> None:
    def total(n: int) -> Facts:
        return Facts(event_type="t", files=[FileFact(name="f", size=n)])

    assert matches(f"files.size == {size}", total(bytes_))
    assert not matches(f"files.size == {size}", total(bytes_ + 1))
    assert matches(f"files.size < {size}", total(bytes_ - 1))


def test_the_seed_rule_sends_videos_and_big_inputs_apart() -> None:
    rule = compile_rule('data.mime startswith "video/" or files.size > 1GiB')
    small_doc = Facts(
        event_type="t", data={"mime": "text/plain"}, files=[FileFact(name="a", size=10)]
    )
    big_doc = Facts(
        event_type="t", data={"mime": "text/plain"}, files=[FileFact(name="a", size=2 * 1024**3)]
    )
    small_video = Facts(
        event_type="t", data={"mime": "video/mp4"}, files=[FileFact(name="v", size=1)]
    )
    assert [rule.evaluate(f).matched for f in (small_doc, big_doc, small_video)] == [
        False,
        True,
        True,
    ]
    assert rule.needs == {Need.DATA, Need.FILES, Need.SIZES}
    assert compile_rule('event.type == "a"').needs == frozenset()
    assert compile_rule("files.count > 1").needs == {Need.FILES}


@pytest.mark.parametrize(
    ("text", "line", "column", "rule", "says"),
    [
        ('event.type == "a")', 1, 18, rules.INVALID_EXPRESSION, "unexpected token ')'"),
        ("event.type ==", 1, 14, rules.INVALID_EXPRESSION, "ends too early"),
        ('(event.type == "a"', 1, 19, rules.INVALID_EXPRESSION, "expected ')'"),
        ('event.type = "a"', 1, 12, rules.INVALID_EXPRESSION, "compare with '=='"),
        ("true && false", 1, 6, rules.INVALID_EXPRESSION, "use and, or, not"),
        ('data.mime == "abc', 1, 14, rules.INVALID_EXPRESSION, "unterminated string"),
        ("files.size > 1Gb", 1, 15, rules.INVALID_EXPRESSION, "unknown size unit 'Gb'"),
        ("files.count > 1 < 2", 1, 17, rules.INVALID_EXPRESSION, "unexpected token '<'"),
        ("", 1, 1, rules.INVALID_EXPRESSION, "empty"),
        ('evnt.type == "a"', 1, 1, rules.UNKNOWN_NAME, "unknown name 'evnt.type'"),
        ("files.length > 1", 1, 1, rules.UNKNOWN_NAME, "unknown name 'files.length'"),
        ('file.name == "a"', 1, 1, rules.UNKNOWN_NAME, "inside files.any"),
        ("True", 1, 1, rules.UNKNOWN_NAME, "lowercase"),
        ('size("a") > 1', 1, 1, rules.UNKNOWN_NAME, "unknown function 'size'"),
        ("files.any(files.any(true))", 1, 11, rules.INVALID_EXPRESSION, "cannot nest"),
        ('files.count startswith "a"', 1, 1, rules.TYPE_MISMATCH, "files.count is a number"),
        ('files.size > "big"', 1, 14, rules.TYPE_MISMATCH, "never compare"),
        ("event.type == 3", 1, 15, rules.TYPE_MISMATCH, "never compare"),
        ("true < false", 1, 1, rules.TYPE_MISMATCH, "compares numbers, sizes or text"),
        ("files.count == [1, 2]", 1, 16, rules.TYPE_MISMATCH, "test a list with 'in'"),
        ('files.count in "abc"', 1, 1, rules.TYPE_MISMATCH, "'in' text looks for text"),
        ('"a" in files.count', 1, 8, rules.TYPE_MISMATCH, "'in' looks in a list or in text"),
        ('data.a in ["x", 1]', 1, 11, rules.TYPE_MISMATCH, "all of one kind"),
        ("event.type in [1, 2]", 1, 15, rules.TYPE_MISMATCH, "holds a number"),
        ("data.mime", 1, 1, rules.NOT_A_CONDITION, "not a condition"),
        ("files.count and true", 1, 1, rules.NOT_A_CONDITION, "not a condition"),
        ('event.type == "a" and\n  files.count > "x"', 2, 17, rules.TYPE_MISMATCH, "never compare"),
    ],
)
def test_bad_rules_say_where(text: str, line: int, column: int, rule: str, says: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(text)
    err = caught.value
    assert (err.line, err.column, err.rule) == (line, column, rule), str(err)
    assert says in str(err)
    where = f"line {line}, column {column}" if line > 1 else f"column {column}"
    assert f" at {where}" in str(err).splitlines()[0]
    # the caret sits under the spot in the line shown
    shown, pointer = str(err).splitlines()[-2:]
    assert pointer.index("^") == column + 1
    assert shown == "  " + text.split("\n")[line - 1]
    assert isinstance(err, errors.ValidationError)


def test_a_rule_too_long_is_refused() -> None:
    with pytest.raises(RuleError, match="longer than"):
        compile_rule("true or " * 600 + "true")


def test_missing_keys_and_non_numbers_are_false_with_a_note() -> None:
    verdict = compile_rule('data.nothere startswith "a"').evaluate(EVENT)
    assert not verdict.matched and verdict.notes == ("data.nothere is missing",)
    verdict = compile_rule("data.nothere > 3").evaluate(EVENT)
    assert not verdict.matched and "data.nothere is missing" in verdict.explain()
    verdict = compile_rule('data.nothere == "x"').evaluate(EVENT)
    assert not verdict.matched and verdict.notes == ("data.nothere is missing",)
    verdict = compile_rule("data.word > 3").evaluate(EVENT)
    assert not verdict.matched and verdict.notes == ("data.word is 'many', not a number",)
    # neither == nor != holds for a value that cannot be read as a number
    assert not matches("data.word == 3") and not matches("data.word != 3")
    assert matches("not (data.word > 3)")


def test_unknown_file_sizes_count_as_zero_with_a_note() -> None:
    facts = Facts(event_type="t", files=[FileFact(name="a"), FileFact(name="b", size=5)])
    verdict = compile_rule("files.size == 5").evaluate(facts)
    assert verdict.matched and "size of 'a' is unknown" in verdict.explain()
    assert (
        not compile_rule('files.any(file.size >= 0 and file.name == "a")').evaluate(facts).matched
    )


def test_no_eval_a_rule_is_data_only() -> None:
    with pytest.raises(RuleError):
        compile_rule('__import__("os").system("true")')
    with pytest.raises(RuleError):
        compile_rule("data.__class__ == 1 or ().__class__")


def test_strings_take_either_quote_and_json_escapes() -> None:
    facts = Facts(event_type="t", data={"q": 'say "hi"\n', "s": "it's"})
    assert matches('data.q == "say \\"hi\\"\\n"', facts)
    assert matches("data.s == 'it\\'s'", facts)
    with pytest.raises(RuleError, match="invalid escape"):
        compile_rule('data.q == "\\q"')


def test_rule_is_a_pydantic_field_type() -> None:
    class Holder(BaseModel):
        rule: rules.Rule

    held = Holder.model_validate({"rule": "files.count > 1"})
    assert held.rule.evaluate(EVENT).matched
    assert held.model_dump(mode="json") == {"rule": "files.count > 1"}
    assert Holder.model_validate_json(held.model_dump_json()).rule == held.rule
    with pytest.raises(ValueError, match="at column 14"):
        Holder.model_validate({"rule": "files.count >"})


def _spec(**fields: object) -> ModuleSpec:
    return ModuleSpec.parse({"name": "m", "subscribes_to": "a.b", "command": ["x"], **fields})


def test_the_spec_refuses_bad_rules_naming_field_and_column() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        _spec(when='data.mime == "a")')
    assert caught.value.field == "when" and caught.value.rule == rules.INVALID_EXPRESSION
    assert "at column 17" in str(caught.value)
    with pytest.raises(errors.ValidationError) as caught:
        _spec(routes=[{"when": "true", "executor": "local"}, {"when": "files.x", "executor": "k"}])
    assert caught.value.field == "routes.1.when" and caught.value.rule == rules.UNKNOWN_NAME
    with pytest.raises(errors.ValidationError) as caught:
        _spec(routes=[{"executor": "local"}, {"when": "true", "executor": "kubernetes"}])
    assert caught.value.rule == "UnreachableRoute" and caught.value.field == "routes"
    with pytest.raises(errors.ValidationError) as caught:
        _spec(routes=[{"executor": "Not A Name"}])
    assert caught.value.rule == "InvalidExecutorName"
    with pytest.raises(errors.ValidationError) as caught:
        _spec(routes=[{"executor": "local", "resources": {"gpu": 99}}])
    assert caught.value.field == "routes.0.resources.gpu"


def test_without_rules_is_what_a_job_gets() -> None:
    spec = _spec(when="true", routes=[{"executor": "local"}])
    assert spec.has_rules and not spec.without_rules().has_rules
    plain = _spec()
    assert plain.without_rules() is plain


def test_decide_filters_then_takes_the_first_matching_route() -> None:
    spec = _spec(
        resources={"cpu": "1", "memory": "1Gi"},
        when='data.mime != "image/png"',
        routes=[
            {
                "when": 'data.mime startswith "video/" or files.size > 1GiB',
                "executor": "azurebatch",
                "resources": {"gpu": 1},
            },
            {"when": "data.nothere > 1", "executor": "local"},
            {"executor": "kubernetes", "resources": {"cpu": "500m"}},
        ],
    )
    video = decide(spec, EVENT, default_executor="local")
    assert video.run and video.route is not None
    assert (video.route.index, video.route.executor) == (0, "azurebatch")
    assert video.route.resources == Resources(cpu="1", memory="1Gi", gpu=1)
    assert "route 0 → azurebatch (cpu=1, memory=1Gi, gpu=1) when" in video.route.describe()
    doc = Facts(event_type="t", data={"mime": "text/plain"}, files=[FileFact(name="a", size=1)])
    other = decide(spec, doc, default_executor="local")
    assert other.route is not None
    assert (other.route.index, other.route.executor) == (2, "kubernetes")
    assert other.route.resources == Resources(cpu="500m", memory="1Gi")
    assert other.route.notes == "data.nothere is missing"
    photo = decide(spec, Facts(event_type="t", data={"mime": "image/png"}), default_executor="x")
    assert not photo.run and photo.route is None
    assert photo.reason == 'filtered: when data.mime != "image/png" is false'


def test_no_route_matching_falls_to_the_dispatchers_default() -> None:
    spec = _spec(routes=[{"when": "files.count > 5", "executor": "azurebatch"}])
    chosen = decide(spec, EVENT, default_executor="kubernetes")
    assert chosen.route is not None
    assert (chosen.route.index, chosen.route.executor) == (None, "kubernetes")
    assert chosen.route.describe() == "default → kubernetes"
    assert decide(_spec(), EVENT, default_executor="local").route is None


@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/*/pipeline*.yaml")), ids=str)
def test_example_pipeline_files_pass_the_rules(path: Path) -> None:
    pipeline = PipelineSpec.load(path)
    for module in pipeline.modules:
        for text in [module.when, *(r.when for r in module.routes)]:
            if text:
                compile_rule(text)
