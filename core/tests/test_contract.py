"""The 2018 file contract: key/value files, confined paths and event files."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest

from ion.core import errors
from ion.core.contract import (
    JobLayout,
    confined_relative,
    parse_event_file,
    parse_pairs,
    resolve_inside,
)
from ion.core.events import KeyValuePair

# --- parse_pairs -----------------------------------------------------------------------------


def test_pairs_parse_in_file_order() -> None:
    raw = b'[{"key": "b", "value": "2"}, {"key": "a", "value": "1"}, {"key": "b", "value": "3"}]'
    assert parse_pairs(raw, source="x") == [
        KeyValuePair(key="b", value="2"),
        KeyValuePair(key="a", value="1"),
        KeyValuePair(key="b", value="3"),
    ]


@pytest.mark.parametrize("raw", [b"", b"   \n", "  "])
def test_an_empty_file_means_no_pairs(raw: bytes | str) -> None:
    assert parse_pairs(raw, source="out/insights.json") == []


def test_a_missing_value_is_an_empty_string() -> None:
    assert parse_pairs(b'[{"key": "k"}]', source="x") == [KeyValuePair(key="k", value="")]


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"{not json", "json"),
        (b"\xff\xfe", "json"),
        (b'{"key": "k", "value": "v"}', "array"),
        (b'"text"', "array"),
        (b'["k", "v"]', "pair"),
        (b'[{"value": "v"}]', "pair"),
        (b'[{"key": 1, "value": "v"}]', "pair"),
        (b'[{"key": "k", "value": 1}]', "string-value"),
        (b'[{"key": "k", "value": null}]', "string-value"),
        (b'[{"key": "k", "value": ["a"]}]', "string-value"),
    ],
)
def test_malformed_pairs_are_refused_naming_the_source(raw: bytes, rule: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        parse_pairs(raw, source="out/insights.json")
    assert caught.value.rule == rule
    assert caught.value.field == "out/insights.json"
    assert "out/insights.json" in str(caught.value)


def test_a_non_string_value_message_names_the_key_and_type() -> None:
    with pytest.raises(errors.ValidationError, match=r"'count'.*int"):
        parse_pairs(b'[{"key": "count", "value": 3}]', source="x")


# --- confined_relative -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a.txt", "a.txt"),
        ("sub/dir/a.txt", "sub/dir/a.txt"),
        ("./a.txt", "a.txt"),
        ("sub//a.txt", "sub/a.txt"),
        ("sub\\win.txt", "sub/win.txt"),
        ("a..b.txt", "a..b.txt"),
    ],
)
def test_relative_paths_are_cleaned(given: str, expected: str) -> None:
    assert confined_relative(given, what="file") == PurePosixPath(expected)


@pytest.mark.parametrize(
    "given",
    [
        "../secret",
        "sub/../../secret",
        "sub/..",
        "..",
        "/etc/passwd",
        "\\etc\\passwd",
        "..\\up",
        "",
        ".",
        "./",
        "nul\0byte",
    ],
)
def test_escaping_or_empty_paths_are_refused(given: str) -> None:
    with pytest.raises(errors.PathEscapeError) as caught:
        confined_relative(given, what="input file")
    assert caught.value.field == "input file"
    assert caught.value.rule == "confined-path"


# --- resolve_inside --------------------------------------------------------------------------


def test_a_plain_file_resolves_inside(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    assert resolve_inside(tmp_path, PurePosixPath("sub/f"), what="f") == tmp_path / "sub" / "f"


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    (root / "link").symlink_to(outside / "secret")
    with pytest.raises(errors.PathEscapeError, match="outside"):
        resolve_inside(root, PurePosixPath("link"), what="output file")


def test_a_symlinked_directory_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc").symlink_to("/etc")
    with pytest.raises(errors.PathEscapeError):
        resolve_inside(root, PurePosixPath("etc/hostname"), what="file")


def test_an_absolute_symlink_to_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "up").symlink_to("..")
    with pytest.raises(errors.PathEscapeError):
        resolve_inside(root, PurePosixPath("up"), what="file")


def test_a_symlink_inside_the_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "alias").symlink_to("real")
    (tmp_path / "f-link").symlink_to(tmp_path / "real" / "f")
    assert resolve_inside(tmp_path, PurePosixPath("alias/f"), what="f").read_text() == "x"
    assert resolve_inside(tmp_path, PurePosixPath("f-link"), what="f").read_text() == "x"


def test_a_root_reached_through_a_symlink_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "via").symlink_to(tmp_path / "real")
    assert resolve_inside(tmp_path / "via", PurePosixPath("f"), what="f").read_text() == "x"


# --- parse_event_file ------------------------------------------------------------------------

TYPES = frozenset({"image.small", "image.tagged"})


@pytest.fixture
def layout(tmp_path: Path) -> JobLayout:
    lay = JobLayout(tmp_path / "ion")
    lay.out_data.mkdir(parents=True)
    lay.out_events.mkdir(parents=True)
    return lay


def event_file(layout: JobLayout, pairs: list[tuple[str, str]], name: str = "e1.json") -> Path:
    path = layout.out_events / name
    path.write_text(json.dumps([{"key": k, "value": v} for k, v in pairs]))
    return path


def data_file(layout: JobLayout, rel: str, content: str = "x") -> None:
    path = layout.out_data / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def test_layout_is_the_2018_tree(tmp_path: Path) -> None:
    lay = JobLayout(tmp_path)
    assert lay.in_data == tmp_path / "in" / "data"
    assert lay.in_eventmeta == tmp_path / "in" / "eventmeta.json"
    assert lay.out_data == tmp_path / "out" / "data"
    assert lay.out_insights == tmp_path / "out" / "insights.json"
    assert lay.out_events == tmp_path / "out" / "events"


def test_an_event_file_with_files_and_data(layout: JobLayout) -> None:
    data_file(layout, "small.png")
    data_file(layout, "thumbs/a/1.png")
    path = event_file(
        layout,
        [("eventType", "image.small"), ("files", "small.png, thumbs/a/1.png"), ("k", "v")],
    )
    ef = parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")
    assert ef.name == "e1.json"
    assert ef.event_type == "image.small"
    assert ef.files == ["small.png", "thumbs/a/1.png"]
    assert ef.data == [KeyValuePair(key="k", value="v")]


@pytest.mark.parametrize("files", ["", " ", ",", " , ,"])
def test_an_empty_files_value_names_no_file(layout: JobLayout, files: str) -> None:
    path = event_file(layout, [("eventType", "image.small"), ("files", files)])
    ef = parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")
    assert ef.files == []


def test_empty_entries_between_files_are_dropped(layout: JobLayout) -> None:
    data_file(layout, "a")
    data_file(layout, "b")
    path = event_file(layout, [("eventType", "image.small"), ("files", "a,,b,")])
    assert parse_event_file(path, layout=layout, valid_types=TYPES, module="m").files == ["a", "b"]


def test_files_key_order_fixes_where_url_pairs_go(layout: JobLayout) -> None:
    data_file(layout, "a")
    path = event_file(
        layout,
        [("first", "1"), ("eventType", "image.small"), ("second", "2"), ("files", "a"), ("x", "3")],
    )
    ef = parse_event_file(path, layout=layout, valid_types=TYPES, module="m")
    assert [p.key for p in ef.data] == ["first", "second", "x"]
    assert ef.files_index == 2  # the URL pairs go between "second" and "x"


def test_without_a_files_key_url_pairs_would_go_last(layout: JobLayout) -> None:
    path = event_file(layout, [("eventType", "image.small"), ("a", "1"), ("b", "2")])
    ef = parse_event_file(path, layout=layout, valid_types=TYPES, module="m")
    assert ef.files == []
    assert ef.files_index == 2


def test_a_missing_event_type_is_refused_listing_the_declared_ones(layout: JobLayout) -> None:
    path = event_file(layout, [("k", "v")])
    with pytest.raises(errors.ValidationError) as caught:
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")
    assert caught.value.rule == "event-type-required"
    assert caught.value.field == "out/events/e1.json"
    assert "image.small" in str(caught.value)
    assert "image.tagged" in str(caught.value)


def test_an_undeclared_event_type_is_refused(layout: JobLayout) -> None:
    path = event_file(layout, [("eventType", "image.huge")])
    with pytest.raises(errors.ValidationError) as caught:
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")
    assert caught.value.rule == "event-type-declared"
    assert "'image.huge'" in str(caught.value)
    assert "'resize'" in str(caught.value)


def test_event_types_match_exactly(layout: JobLayout) -> None:
    path = event_file(layout, [("eventType", "Image.Small")])
    with pytest.raises(errors.ValidationError):
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")


def test_a_listed_file_missing_from_out_data_is_refused(layout: JobLayout) -> None:
    path = event_file(layout, [("eventType", "image.small"), ("files", "ghost.png")])
    with pytest.raises(errors.ValidationError) as caught:
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")
    assert caught.value.rule == "file-exists"
    assert "'ghost.png'" in str(caught.value)


def test_a_listed_directory_is_not_a_file(layout: JobLayout) -> None:
    (layout.out_data / "dir").mkdir()
    path = event_file(layout, [("eventType", "image.small"), ("files", "dir")])
    with pytest.raises(errors.ValidationError, match="not in out/data"):
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "sub/../../x"])
def test_a_listed_file_leaving_out_data_is_refused(layout: JobLayout, name: str) -> None:
    path = event_file(layout, [("eventType", "image.small"), ("files", name)])
    with pytest.raises(errors.PathEscapeError):
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")


def test_a_listed_symlink_out_of_out_data_is_refused(layout: JobLayout, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", layout.out_data / "innocent.png")
    path = event_file(layout, [("eventType", "image.small"), ("files", "innocent.png")])
    with pytest.raises(errors.PathEscapeError):
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")


def test_a_malformed_event_file_names_itself(layout: JobLayout) -> None:
    path = layout.out_events / "broken.json"
    path.write_text("[{")
    with pytest.raises(errors.ValidationError, match=r"out/events/broken\.json"):
        parse_event_file(path, layout=layout, valid_types=TYPES, module="resize")


def test_plain_files_are_taken_as_found(layout: JobLayout, tmp_path: Path) -> None:
    data_file(layout, "a.txt")
    data_file(layout, "sub/b.txt")
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", layout.out_data / "link")
    path = event_file(layout, [("eventType", "image.small"), ("files", "a.txt,sub/b.txt")])
    ef = parse_event_file(
        path,
        layout=layout,
        valid_types=TYPES,
        module="m",
        plain_files=frozenset({"a.txt", "sub/b.txt"}),
    )
    assert ef.files == ["a.txt", "sub/b.txt"]
    # Anything not known to be plain is still checked.
    bad = event_file(layout, [("eventType", "image.small"), ("files", "a.txt,link")], "bad.json")
    with pytest.raises(errors.PathEscapeError):
        parse_event_file(
            bad, layout=layout, valid_types=TYPES, module="m", plain_files=frozenset({"a.txt"})
        )
