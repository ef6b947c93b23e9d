"""The Kubernetes name rules of `ion.core.identifiers`: good and bad cases, field and rule named.

Module specs use them for node selectors, tolerations, Secret and service account names and
image references, so a spec Kubernetes would refuse is refused at create time instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ion.core import errors, identifiers

Check = Callable[..., str]


def refused(check: Callable[..., Any], value: object, **options: Any) -> errors.ValidationError:
    with pytest.raises(errors.ValidationError) as caught:
        check(value, field="where", **options)
    assert caught.value.field == "where"
    assert str(caught.value).startswith("where: ")
    return caught.value


@pytest.mark.parametrize(
    "name",
    ["a", "gpu-secret", "a.b.c", "x" * 253, "a1-b2.c3", "0", "registry-creds", f"{'a' * 63}.b"],
)
def test_good_dns_subdomains(name: str) -> None:
    assert identifiers.is_dns_subdomain(name)
    assert identifiers.check_dns_subdomain(name, field="where") == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("A", id="uppercase"),
        pytest.param("a_b", id="underscore"),
        pytest.param("-a", id="leading-dash"),
        pytest.param("a-", id="trailing-dash"),
        pytest.param("a..b", id="empty-label"),
        pytest.param(".a", id="leading-dot"),
        pytest.param("a b", id="space"),
        pytest.param("a/b", id="slash"),
        pytest.param("x" * 254, id="254-chars"),
        pytest.param("ü", id="non-ascii"),
    ],
)
def test_bad_dns_subdomains(name: str) -> None:
    assert not identifiers.is_dns_subdomain(name)
    err = refused(identifiers.check_dns_subdomain, name)
    assert err.rule == identifiers.INVALID_DNS_SUBDOMAIN == "InvalidDnsSubdomain"
    assert "DNS-1123" in str(err)


def test_empty_subdomain_only_where_allowed() -> None:
    assert identifiers.check_dns_subdomain("", field="f", allow_empty=True) == ""
    assert refused(identifiers.check_dns_subdomain, "Bad", allow_empty=True).rule == (
        "InvalidDnsSubdomain"
    )


def test_a_name_that_is_not_text_is_wrong_type() -> None:
    assert refused(identifiers.check_dns_subdomain, 3).rule == identifiers.WRONG_TYPE


def test_subdomain_lists_refuse_duplicates_and_bad_names() -> None:
    assert identifiers.check_dns_subdomains(["a", "b"], field="f") == ["a", "b"]
    err = refused(identifiers.check_dns_subdomains, ["a", "b", "a"])
    assert (err.rule, "'a'" in str(err)) == ("DuplicateName", True)
    assert refused(identifiers.check_dns_subdomains, ["a", "B"]).rule == "InvalidDnsSubdomain"


@pytest.mark.parametrize(
    "key",
    [
        "gpu",
        "kubernetes.io/arch",
        "node.kubernetes.io/instance-type",
        "nvidia.com/gpu",
        "A_b.C-9",
        "x" * 63,
        f"{'p' * 253}/{'n' * 63}",
        "example.com/Upper_Case",
    ],
)
def test_good_qualified_names(key: str) -> None:
    assert identifiers.is_qualified_name(key)
    assert identifiers.check_qualified_name(key, field="where") == key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 64, id="64-char-name"),
        pytest.param("a/b/c", id="two-slashes"),
        pytest.param("/name", id="empty-prefix"),
        pytest.param("prefix/", id="empty-name"),
        pytest.param("Example.com/name", id="uppercase-prefix"),
        pytest.param(f"{'p' * 254}/name", id="254-char-prefix"),
        pytest.param("-name", id="leading-dash"),
        pytest.param("name_", id="trailing-underscore"),
        pytest.param("na me", id="space"),
        pytest.param("na=me", id="equals"),
        pytest.param("ü", id="non-ascii"),
    ],
)
def test_bad_qualified_names(key: str) -> None:
    assert not identifiers.is_qualified_name(key)
    err = refused(identifiers.check_qualified_name, key)
    assert err.rule == identifiers.INVALID_QUALIFIED_NAME == "InvalidQualifiedName"


def test_empty_qualified_name_only_where_allowed() -> None:
    assert identifiers.check_qualified_name("", field="f", allow_empty=True) == ""


@pytest.mark.parametrize("value", ["", "a", "true", "Standard_NC6", "v1.2-3", "x" * 63])
def test_good_label_values(value: str) -> None:
    assert identifiers.is_label_value(value)
    assert identifiers.check_label_value(value, field="where") == value


@pytest.mark.parametrize("value", ["x" * 64, "-a", "a-", "a b", "a/b", "é", ".a"])
def test_bad_label_values(value: str) -> None:
    assert not identifiers.is_label_value(value)
    err = refused(identifiers.check_label_value, value)
    assert err.rule == identifiers.INVALID_LABEL_VALUE == "InvalidLabelValue"


def test_labels_check_keys_then_values() -> None:
    good = {"kubernetes.io/arch": "amd64", "pool": ""}
    assert identifiers.check_labels(good, field="f") == good
    assert refused(identifiers.check_labels, {"a/b/c": "x"}).rule == "InvalidQualifiedName"
    err = refused(identifiers.check_labels, {"pool": "gpu pool"})
    assert (err.rule, "'gpu pool'" in str(err)) == ("InvalidLabelValue", True)


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "image",
    [
        "python",
        "python:3.11-slim",
        "dotjson/ion-handler",
        "registry.local/resize:1",
        "localhost:5000/team/app",
        "myregistry.azurecr.io/ion/handler:2024.1",
        f"registry.example:5000/org/app@{DIGEST}",
        f"registry.example:5000/org/app:v1@{DIGEST}",
        "a/b_c/d__e/f-g/h--i.j",
        "Registry.Example.com/app:Latest_1",
        "x" * 255,
    ],
)
def test_good_image_references(image: str) -> None:
    assert identifiers.is_image_reference(image)
    assert identifiers.check_image_reference(image, field="where") == image


@pytest.mark.parametrize(
    "image",
    [
        pytest.param("", id="empty"),
        pytest.param("python 3", id="space"),
        pytest.param(" python", id="leading-space"),
        pytest.param("python\n", id="newline"),
        pytest.param("Team/App", id="uppercase-path"),
        pytest.param("app:", id="empty-tag"),
        pytest.param("app:a:b", id="two-tags"),
        pytest.param("app:" + "t" * 129, id="129-char-tag"),
        pytest.param("app:-tag", id="tag-leading-dash"),
        pytest.param("app@sha256:xyz", id="bad-digest"),
        pytest.param("app@", id="empty-digest"),
        pytest.param("host:port/app", id="non-numeric-port"),
        pytest.param("/app", id="leading-slash"),
        pytest.param("app/", id="trailing-slash"),
        pytest.param("a//b", id="empty-component"),
        pytest.param("a/-b", id="component-leading-dash"),
        pytest.param("x" * 256, id="256-chars"),
        pytest.param("https://registry/app", id="url"),
    ],
)
def test_bad_image_references(image: str) -> None:
    assert not identifiers.is_image_reference(image)
    err = refused(identifiers.check_image_reference, image)
    assert err.rule == identifiers.INVALID_IMAGE_REFERENCE == "InvalidImageReference"


def test_empty_image_only_where_allowed() -> None:
    assert identifiers.check_image_reference("", field="f", allow_empty=True) == ""
