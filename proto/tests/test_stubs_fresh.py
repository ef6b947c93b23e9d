"""The committed stubs are what `python proto/generate.py` makes from proto/protos today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROTO = Path(__file__).resolve().parents[1]
COMMITTED = PROTO / "src" / "ion" / "proto"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ion_proto_generate", PROTO / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generated_files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ("_pb2" in p.name or p.relative_to(root) == Path("v1/__init__.py"))
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    _generator().generate(tmp_path)
    fresh = _generated_files(tmp_path)
    committed = _generated_files(COMMITTED)
    assert sorted(fresh) == sorted(committed), "generated file set changed: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run `make proto` and commit the result"


def test_stubs_import_inside_the_ion_proto_package() -> None:
    from ion.proto import module_pb2_grpc, trace_pb2_grpc
    from ion.proto.v1 import events_pb2_grpc

    assert module_pb2_grpc.module__pb2.__name__ == "ion.proto.module_pb2"
    assert trace_pb2_grpc.trace__pb2.__name__ == "ion.proto.trace_pb2"
    assert events_pb2_grpc.ion_dot_v1_dot_events__pb2.__name__ == "ion.proto.v1.events_pb2"
