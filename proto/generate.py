"""Regenerate Ion's gRPC stubs from proto/protos into proto/src/ion/proto (`make proto`).

protoc writes imports relative to the proto root (`import module_pb2`, `from ion.v1 import
types_pb2`); this script moves the output under the `ion.proto` package (`ion/v1/*` becomes
`ion/proto/v1/*`) and rewrites those imports to match, so the stubs import cleanly from the
installed package. Message stubs come from `--pyi_out`, service stubs' types from mypy-protobuf.

Usage: python proto/generate.py [--out DIR]   (default: proto/src/ion/proto)
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "protos"
DEFAULT_OUT = HERE / "src" / "ion" / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
V1_INIT = '"""Generated stubs of the versioned `ion.v1` protobuf package."""\n'

# `import module_pb2 as module__pb2` / `import module_pb2` (root protos, no package)
_ROOT_IMPORT = re.compile(r"^import (\w+_pb2)( as \w+)?$", re.MULTILINE)
# `from ion.v1 import types_pb2 as ...`
_V1_FROM = re.compile(r"^from ion\.v1 import ", re.MULTILINE)
# `import ion.v1.types_pb2` and references `ion.v1.types_pb2.X` (never method paths)
_V1_DOTTED = re.compile(r"\bion\.v1\.(\w+_pb2)\b")


def proto_files() -> list[Path]:
    """Return every .proto source, relative to the proto root, sorted."""
    return sorted(p.relative_to(PROTOS) for p in PROTOS.rglob("*.proto"))


def _rewrite(text: str) -> str:
    text = _ROOT_IMPORT.sub(lambda m: f"from ion.proto import {m[1]}{m[2] or ''}", text)
    text = _V1_FROM.sub("from ion.proto.v1 import ", text)
    return _V1_DOTTED.sub(r"ion.proto.v1.\1", text)


def _destination(relative: Path) -> Path:
    parts = relative.parts
    if parts[:2] == ("ion", "v1"):
        return Path("v1", *parts[2:])
    return relative


def generate(out_dir: Path) -> list[Path]:
    """Generate the stubs into `out_dir` (replacing generated files there); return them."""
    from grpc_tools import protoc

    plugin = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    if not plugin.exists():
        found = shutil.which("protoc-gen-mypy_grpc")
        if found is None:
            raise SystemExit("protoc-gen-mypy_grpc not found: install mypy-protobuf")
        plugin = Path(found)
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        args = [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-mypy_grpc={plugin}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            f"--mypy_grpc_out={raw}",
            *(str(p) for p in proto_files()),
        ]
        code = protoc.main(args)
        if code != 0:
            raise SystemExit(f"protoc failed with exit code {code}")
        for old in out_dir.rglob("*"):
            if old.is_file() and old.name.endswith(GENERATED_SUFFIXES):
                old.unlink()
        written: list[Path] = []
        for produced in sorted(raw.rglob("*")):
            if not produced.is_file():
                continue
            target = out_dir / _destination(produced.relative_to(raw))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_rewrite(produced.read_text()))
            written.append(target)
    v1_init = out_dir / "v1" / "__init__.py"
    v1_init.write_text(V1_INIT)
    written.append(v1_init)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    """Regenerate the stubs; print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in generate(args.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
