"""Strict offline validation of manifests against the pinned Kubernetes OpenAPI v3 schema.

The schema is the one published inside the pinned `k8s.io/kubernetes` module
(`api/openapi-spec/v3`), found in the Go module cache that building the test binaries fills
(`go mod download` fetches it when missing). Validation is strict as `fieldValidation=Strict`
is: an unknown field anywhere is an error, and so are a wrong JSON type, a missing required
field and a value outside an enum.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "v1.34.4"
_GROUP_FILES = {
    "v1": "api__v1_openapi.json",
    "batch/v1": "apis__batch__v1_openapi.json",
    "apps/v1": "apis__apps__v1_openapi.json",
    "rbac.authorization.k8s.io/v1": "apis__rbac.authorization.k8s.io__v1_openapi.json",
    "policy/v1": "apis__policy__v1_openapi.json",
    "networking.k8s.io/v1": "apis__networking.k8s.io__v1_openapi.json",
}


def spec_dir() -> Path | None:
    """The pinned module's `api/openapi-spec/v3`, downloading the module if needed."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    modcache = os.environ.get("GOMODCACHE") or str(Path.home() / "go" / "pkg" / "mod")
    found = Path(modcache) / f"k8s.io/kubernetes@{KUBERNETES_VERSION}/api/openapi-spec/v3"
    if found.is_dir():
        return found
    if not Path(go).exists():
        return None
    done = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
        cwd=Path(__file__).resolve().parents[2] / "tools" / "k8s-testbins",
        check=False,
    )
    if done.returncode != 0:
        return None
    path = Path(json.loads(done.stdout)["Dir"]) / "api" / "openapi-spec" / "v3"
    return path if path.is_dir() else None


@cache
def _schemas(api_version: str) -> dict[str, Any]:
    directory = spec_dir()
    if directory is None:
        raise FileNotFoundError(f"the OpenAPI schema of k8s.io/kubernetes@{KUBERNETES_VERSION}")
    data = json.loads((directory / _GROUP_FILES[api_version]).read_text())
    return dict(data["components"]["schemas"])


def _resolve(schemas: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in node:
            node = schemas[node["$ref"].rsplit("/", 1)[1]]
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _check(schemas: dict[str, Any], node: dict[str, Any], value: Any, at: str) -> list[str]:
    node = _resolve(schemas, node)
    problems: list[str] = []
    if node.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            problems.append(f"{at}: want an integer or a string, got {type(value).__name__}")
        return problems
    kind = node.get("type")
    if node.get("format") == "int-or-string" or "Quantity" in node.get("description", "")[:30]:
        return problems if isinstance(value, (int, str, float)) else [f"{at}: not a quantity"]
    wrong_type = kind in _TYPES and not isinstance(value, _TYPES[kind])
    if wrong_type or (kind in _TYPES and kind != "boolean" and isinstance(value, bool)):
        return [f"{at}: want {kind}, got {type(value).__name__}"]
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{at}: {value!r} is not one of {node['enum']}")
    if isinstance(value, dict):
        properties = node.get("properties")
        if properties is not None:
            for key, item in value.items():
                if key not in properties:
                    problems.append(f"{at}: unknown field {key!r}")
                else:
                    problems += _check(schemas, properties[key], item, f"{at}.{key}")
            for key in node.get("required", []):
                if key not in value:
                    problems.append(f"{at}: missing required field {key!r}")
        elif isinstance(node.get("additionalProperties"), dict):
            for key, item in value.items():
                problems += _check(schemas, node["additionalProperties"], item, f"{at}.{key}")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            problems += _check(schemas, node["items"], item, f"{at}[{i}]")
    return problems


def validate(manifest: dict[str, Any]) -> list[str]:
    """Return every way `manifest` breaks the pinned schema (empty: it is valid)."""
    api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    if api_version not in _GROUP_FILES:
        return [f"apiVersion {api_version!r} is not one this validator knows"]
    schemas = _schemas(api_version)
    group = "core" if api_version == "v1" else api_version.split("/")[0].split(".")[0]
    version = api_version.rsplit("/", 1)[-1]
    candidates = [
        name
        for name in schemas
        if name.endswith(f".{version}.{kind}") and f".{group}." in name.replace("api.core", "core")
    ]
    if not candidates:
        candidates = [n for n in schemas if n.endswith(f".{version}.{kind}")]
    if len(candidates) != 1:
        return [f"no unique schema for {api_version} {kind}: {candidates}"]
    return _check(schemas, schemas[candidates[0]], manifest, kind)
