"""The ATOM/XML management endpoint of the fake, for ``ServiceBusAdministrationClient``.

Serves HTTPS (the SDK's admin client always uses ``https://<Endpoint host:port>``) with a
self-signed certificate from ``_tls``. Supported: topics, subscriptions and rules — create
(PUT), update (PUT with ``If-Match: *``), get, list and delete — plus runtime counts and
``$namespaceinfo``. Queues and everything else answer 400 with an ``<Error>`` body.
"""

from __future__ import annotations

import datetime
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import isodate  # type: ignore[import-untyped]  # an azure-servicebus dependency

from . import _model, _tls
from ._model import (
    EntityExists,
    EntityNotFound,
    FakeServiceBusError,
    Namespace,
    NotAllowed,
    Rule,
    Subscription,
    Topic,
)

SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
COUNT_NS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ATOM_NS = "http://www.w3.org/2005/Atom"
MAX_SPAN = "P10675199DT2H48M5.4775807S"


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# -- formatting ---------------------------------------------------------------------------


def _span(seconds: float | None) -> str:
    if seconds is None or seconds >= _model.MAX_TIMESPAN_SECONDS:
        return MAX_SPAN
    text = f"{seconds:.7f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def _when(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _counts(active: int, dead: int, scheduled: int) -> str:
    return (
        f'<CountDetails xmlns:d2p1="{COUNT_NS}">'
        f"<d2p1:ActiveMessageCount>{active}</d2p1:ActiveMessageCount>"
        f"<d2p1:DeadLetterMessageCount>{dead}</d2p1:DeadLetterMessageCount>"
        f"<d2p1:ScheduledMessageCount>{scheduled}</d2p1:ScheduledMessageCount>"
        "<d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>"
        "<d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount>"
        "</CountDetails>"
    )


def topic_xml(topic: Topic) -> str:
    active = sum(len(s.queue.messages) for s in topic.subscriptions.values())
    dead = sum(len(s.dead_letter_queue.messages) for s in topic.subscriptions.values())
    return (
        f'<TopicDescription xmlns="{SB_NS}" xmlns:i="{XSI_NS}">'
        f"<DefaultMessageTimeToLive>{_span(topic.default_message_time_to_live)}"
        "</DefaultMessageTimeToLive>"
        f"<MaxSizeInMegabytes>{topic.max_size_in_megabytes}</MaxSizeInMegabytes>"
        f"<RequiresDuplicateDetection>{_bool(topic.requires_duplicate_detection)}"
        "</RequiresDuplicateDetection>"
        "<DuplicateDetectionHistoryTimeWindow>"
        f"{_span(topic.duplicate_detection_history_time_window)}"
        "</DuplicateDetectionHistoryTimeWindow>"
        "<EnableBatchedOperations>true</EnableBatchedOperations>"
        "<SizeInBytes>0</SizeInBytes>"
        "<FilteringMessagesBeforePublishing>false</FilteringMessagesBeforePublishing>"
        "<IsAnonymousAccessible>false</IsAnonymousAccessible>"
        "<AuthorizationRules/>"
        "<Status>Active</Status>"
        f"<CreatedAt>{_when(topic.created_at)}</CreatedAt>"
        f"<UpdatedAt>{_when(topic.updated_at)}</UpdatedAt>"
        f"<AccessedAt>{_when(topic.updated_at)}</AccessedAt>"
        "<SupportOrdering>true</SupportOrdering>"
        f"{_counts(active, dead, len(topic.scheduled))}"
        f"<SubscriptionCount>{len(topic.subscriptions)}</SubscriptionCount>"
        f"<AutoDeleteOnIdle>{MAX_SPAN}</AutoDeleteOnIdle>"
        "<EnablePartitioning>false</EnablePartitioning>"
        "<EntityAvailabilityStatus>Available</EntityAvailabilityStatus>"
        "<EnableExpress>false</EnableExpress>"
        "</TopicDescription>"
    )


def subscription_xml(sub: Subscription) -> str:
    active = len(sub.queue.messages)
    dead = len(sub.dead_letter_queue.messages)
    return (
        f'<SubscriptionDescription xmlns="{SB_NS}" xmlns:i="{XSI_NS}">'
        f"<LockDuration>{_span(sub.lock_duration)}</LockDuration>"
        "<RequiresSession>false</RequiresSession>"
        f"<DefaultMessageTimeToLive>{_span(sub.default_message_time_to_live)}"
        "</DefaultMessageTimeToLive>"
        "<DeadLetteringOnMessageExpiration>"
        f"{_bool(sub.dead_lettering_on_message_expiration)}"
        "</DeadLetteringOnMessageExpiration>"
        "<DeadLetteringOnFilterEvaluationExceptions>true"
        "</DeadLetteringOnFilterEvaluationExceptions>"
        f"<MessageCount>{active + dead}</MessageCount>"
        f"<MaxDeliveryCount>{sub.max_delivery_count}</MaxDeliveryCount>"
        "<EnableBatchedOperations>true</EnableBatchedOperations>"
        "<Status>Active</Status>"
        f"<CreatedAt>{_when(sub.created_at)}</CreatedAt>"
        f"<UpdatedAt>{_when(sub.updated_at)}</UpdatedAt>"
        f"<AccessedAt>{_when(sub.updated_at)}</AccessedAt>"
        f"{_counts(active, dead, 0)}"
        f"<AutoDeleteOnIdle>{MAX_SPAN}</AutoDeleteOnIdle>"
        "<EntityAvailabilityStatus>Available</EntityAvailabilityStatus>"
        "</SubscriptionDescription>"
    )


def rule_xml(rule: Rule) -> str:
    kind = {
        _model.TrueFilter: "TrueFilter",
        _model.FalseFilter: "FalseFilter",
        _model.IonToFilter: "SqlFilter",
    }[type(rule.filter)]
    return (
        f'<RuleDescription xmlns="{SB_NS}" xmlns:i="{XSI_NS}">'
        f'<Filter i:type="{kind}"><SqlExpression>{escape(rule.filter.sql_expression)}'
        "</SqlExpression><CompatibilityLevel>20</CompatibilityLevel></Filter>"
        '<Action i:type="EmptyRuleAction"/>'
        f"<CreatedAt>{_when(rule.created_at)}</CreatedAt>"
        f"<Name>{escape(rule.name)}</Name>"
        "</RuleDescription>"
    )


def namespace_xml(host: str) -> str:
    now = _when(time.time())
    return (
        f'<NamespaceInfo xmlns="{SB_NS}" xmlns:i="{XSI_NS}">'
        f"<CreatedTime>{now}</CreatedTime><MessagingSKU>Standard</MessagingSKU>"
        f"<ModifiedTime>{now}</ModifiedTime><Name>{escape(host)}</Name>"
        "<NamespaceType>Messaging</NamespaceType></NamespaceInfo>"
    )


def entry_xml(base: str, path: str, title: str, content: str, updated: float) -> str:
    url = escape(f"{base}/{quote(path)}?api-version=2021-05")
    return (
        f'<entry xmlns="{ATOM_NS}" xml:base="{url}"><id>{url}</id>'
        f'<title type="text">{escape(title)}</title>'
        f"<published>{_when(updated)}</published><updated>{_when(updated)}</updated>"
        f'<author><name>fake-servicebus</name></author><link rel="self" href="{url}"/>'
        f'<content type="application/xml">{content}</content></entry>'
    )


def feed_xml(base: str, path: str, title: str, entries: list[str], next_link: str | None) -> str:
    url = escape(f"{base}/{quote(path)}?api-version=2021-05")
    links = f'<link rel="self" href="{url}"/>'
    if next_link is not None:
        links += f'<link rel="next" href="{escape(next_link)}"/>'
    return (
        f'<feed xmlns="{ATOM_NS}"><title type="text">{escape(title)}</title><id>{url}</id>'
        f"<updated>{_when(time.time())}</updated>{links}{''.join(entries)}</feed>"
    )


def error_xml(status: int, detail: str) -> str:
    return f"<Error><Code>{status}</Code><Detail>{escape(detail)}</Detail></Error>"


# -- parsing ------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> ET.Element | None:
    for element in root.iter():
        if _local(element.tag) == name:
            return element
    return None


def _fields(description: ET.Element) -> dict[str, ET.Element]:
    return {_local(child.tag): child for child in description}


def _text(fields: dict[str, ET.Element], name: str) -> str | None:
    element = fields.get(name)
    if element is None or element.text is None:
        return None
    return element.text.strip()


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    value = isodate.parse_duration(text)
    seconds = float(value.total_seconds())
    return None if seconds >= _model.MAX_TIMESPAN_SECONDS - 1 else seconds


def _flag(text: str | None) -> bool | None:
    return None if text is None else text.lower() == "true"


def topic_settings(fields: dict[str, ET.Element]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if (v := _text(fields, "DefaultMessageTimeToLive")) is not None:
        settings["default_message_time_to_live"] = _seconds(v)
    if (v := _text(fields, "RequiresDuplicateDetection")) is not None:
        settings["requires_duplicate_detection"] = _flag(v)
    if (v := _text(fields, "DuplicateDetectionHistoryTimeWindow")) is not None:
        settings["duplicate_detection_history_time_window"] = _seconds(v)
    if (v := _text(fields, "MaxSizeInMegabytes")) is not None:
        settings["max_size_in_megabytes"] = int(v)
    if _flag(_text(fields, "EnablePartitioning")):
        raise NotAllowed("partitioned topics are not supported by the fake")
    return settings


def subscription_settings(fields: dict[str, ET.Element]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if (v := _text(fields, "LockDuration")) is not None:
        settings["lock_duration"] = _seconds(v)
    if (v := _text(fields, "MaxDeliveryCount")) is not None:
        settings["max_delivery_count"] = int(v)
    if (v := _text(fields, "DefaultMessageTimeToLive")) is not None:
        settings["default_message_time_to_live"] = _seconds(v)
    if (v := _text(fields, "DeadLetteringOnMessageExpiration")) is not None:
        settings["dead_lettering_on_message_expiration"] = _flag(v)
    if _flag(_text(fields, "RequiresSession")):
        raise NotAllowed("sessions are not supported by the fake")
    if _text(fields, "ForwardTo") or _text(fields, "ForwardDeadLetteredMessagesTo"):
        raise NotAllowed("auto-forwarding is not supported by the fake")
    if settings.get("lock_duration") is None and "lock_duration" in settings:
        del settings["lock_duration"]
    return settings


def rule_filter(description: ET.Element) -> _model.RuleFilter:
    fields = _fields(description)
    action = fields.get("Action")
    if action is not None:
        kind = action.get(f"{{{XSI_NS}}}type", "EmptyRuleAction")
        if kind != "EmptyRuleAction":
            raise NotAllowed(f"rule action {kind} is not supported by the fake")
    element = fields.get("Filter")
    if element is None:
        return _model.TrueFilter()
    kind = element.get(f"{{{XSI_NS}}}type", "")
    if kind == "TrueFilter":
        return _model.TrueFilter()
    if kind == "FalseFilter":
        return _model.FalseFilter()
    if kind == "SqlFilter":
        expression = _text(_fields(element), "SqlExpression") or ""
        try:
            return _model.parse_sql_filter(expression)
        except _model.UnsupportedFilter as err:
            raise NotAllowed(str(err)) from None
    raise NotAllowed(f"filter type {kind or '?'} is not supported by the fake")


def _apply(target: Any, settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        if value is not None or key == "default_message_time_to_live":
            setattr(target, key, value)


# -- the server ---------------------------------------------------------------------------


class AtomServer:
    """Threaded HTTPS server bound to ``host:port`` (0 = any free port)."""

    def __init__(self, namespace: Namespace, host: str, port: int) -> None:
        self.namespace = namespace
        self.host = host
        hosts = (self.host,) if self.host not in ("", "0.0.0.0") else ()
        self.ca_file = _tls.certificate_files(hosts)[0]
        context = _tls.server_context(hosts)
        server = self

        class Handler(_Handler):
            atom = server

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-servicebus-atom",
            daemon=True,
        )

    @property
    def base(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    atom: AtomServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        segments = [unquote(s) for s in url.path.split("/") if s]
        try:
            with self.atom.namespace.lock:
                status, payload = self._route(method, segments, query, body)
        except HttpError as err:
            status, payload = err.status, error_xml(err.status, err.detail)
        except EntityNotFound as err:
            status, payload = 404, error_xml(404, str(err))
        except EntityExists as err:
            status, payload = 409, error_xml(409, str(err))
        except (FakeServiceBusError, ET.ParseError, ValueError) as err:
            status, payload = 400, error_xml(400, str(err))
        data = payload.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- routing ----------------------------------------------------------------------

    def _route(
        self, method: str, segments: list[str], query: dict[str, str], body: bytes
    ) -> tuple[int, str]:
        ns = self.atom.namespace
        lowered = [s.lower() for s in segments]
        if lowered == ["$namespaceinfo"] and method == "GET":
            content = namespace_xml(self.atom.host)
            return 200, entry_xml(self.atom.base, "$namespaceinfo", self.atom.host, content, 0)
        if len(lowered) == 2 and lowered[0] == "$resources":
            if method != "GET":
                raise HttpError(405, "method not allowed")
            if lowered[1] == "topics":
                topics = sorted(ns.topics.values(), key=lambda t: t.name)
                return 200, self._feed(
                    segments,
                    query,
                    "Topics",
                    [
                        entry_xml(self.atom.base, t.name, t.name, topic_xml(t), t.updated_at)
                        for t in topics
                    ],
                )
            return 200, self._feed(segments, query, segments[1], [])
        if len(segments) == 1:
            return self._topic(method, segments[0], body)
        if len(segments) == 2 and lowered[1] == "subscriptions" and method == "GET":
            topic = ns.topic(segments[0])
            subs = sorted(topic.subscriptions.values(), key=lambda s: s.name)
            return 200, self._feed(
                segments,
                query,
                "Subscriptions",
                [
                    entry_xml(
                        self.atom.base, self._sub_path(s), s.name, subscription_xml(s), s.updated_at
                    )
                    for s in subs
                ],
            )
        if len(segments) == 3 and lowered[1] == "subscriptions":
            return self._subscription(method, segments[0], segments[2], body)
        if len(segments) == 4 and lowered[1] == "subscriptions" and lowered[3] == "rules":
            if method != "GET":
                raise HttpError(405, "method not allowed")
            sub = ns.topic(segments[0]).subscription(segments[2])
            rules = sorted(sub.rules.values(), key=lambda r: r.name)
            return 200, self._feed(
                segments,
                query,
                "Rules",
                [
                    entry_xml(
                        self.atom.base,
                        f"{self._sub_path(sub)}/rules/{r.name}",
                        r.name,
                        rule_xml(r),
                        r.created_at,
                    )
                    for r in rules
                ],
            )
        if len(segments) == 5 and lowered[1] == "subscriptions" and lowered[3] == "rules":
            return self._rule(method, segments[0], segments[2], segments[4], body)
        raise HttpError(400, f"the fake does not serve {'/'.join(segments)!r}")

    @staticmethod
    def _sub_path(sub: Subscription) -> str:
        return f"{sub.topic.name}/subscriptions/{sub.name}"

    def _feed(
        self, segments: list[str], query: dict[str, str], title: str, entries: list[str]
    ) -> str:
        skip = int(query.get("$skip", "0"))
        top = int(query.get("$top", "100"))
        page = entries[skip : skip + top]
        path = "/".join(segments)
        next_link = None
        if skip + top < len(entries):
            next_link = (
                f"{self.atom.base}/{quote(path)}?$skip={skip + top}&$top={top}&api-version=2021-05"
            )
        return feed_xml(self.atom.base, path, title, page, next_link)

    def _description(self, body: bytes, name: str) -> dict[str, ET.Element]:
        root = ET.fromstring(body)
        description = _find(root, name)
        if description is None:
            other = _find(root, "QueueDescription")
            if other is not None:
                raise NotAllowed("queues are not supported by the fake; use topics")
            raise NotAllowed(f"request body has no {name}")
        return _fields(description)

    def _is_update(self) -> bool:
        return self.headers.get("If-Match") is not None

    def _topic(self, method: str, name: str, body: bytes) -> tuple[int, str]:
        ns = self.atom.namespace
        now = time.time()
        if method == "GET":
            topic = ns.topic(name)
            return 200, entry_xml(
                self.atom.base, topic.name, topic.name, topic_xml(topic), topic.updated_at
            )
        if method == "DELETE":
            ns.delete_topic(name)
            return 200, ""
        settings = topic_settings(self._description(body, "TopicDescription"))
        if self._is_update():
            topic = ns.topic(name)
            wanted = settings.get("requires_duplicate_detection")
            if wanted is not None and wanted != topic.requires_duplicate_detection:
                raise NotAllowed(
                    "RequiresDuplicateDetection cannot be changed on an existing topic"
                )
            _apply(topic, settings)
            topic.updated_at = now
            status = 200
        else:
            topic = ns.create_topic(
                name, now, **{k: v for k, v in settings.items() if v is not None}
            )
            status = 201
        return status, entry_xml(
            self.atom.base, topic.name, topic.name, topic_xml(topic), topic.updated_at
        )

    def _subscription(
        self, method: str, topic_name: str, name: str, body: bytes
    ) -> tuple[int, str]:
        ns = self.atom.namespace
        now = time.time()
        if method == "GET":
            sub = ns.topic(topic_name).subscription(name)
        elif method == "DELETE":
            ns.delete_subscription(topic_name, name)
            return 200, ""
        else:
            settings = subscription_settings(self._description(body, "SubscriptionDescription"))
            if self._is_update():
                sub = ns.topic(topic_name).subscription(name)
                _apply(sub, settings)
                sub.updated_at = now
            else:
                sub = ns.create_subscription(
                    topic_name, name, now, **{k: v for k, v in settings.items() if v is not None}
                )
                return 201, entry_xml(
                    self.atom.base,
                    self._sub_path(sub),
                    sub.name,
                    subscription_xml(sub),
                    sub.updated_at,
                )
        return 200, entry_xml(
            self.atom.base, self._sub_path(sub), sub.name, subscription_xml(sub), sub.updated_at
        )

    def _rule(
        self, method: str, topic_name: str, sub_name: str, name: str, body: bytes
    ) -> tuple[int, str]:
        ns = self.atom.namespace
        sub = ns.topic(topic_name).subscription(sub_name)
        path = f"{self._sub_path(sub)}/rules/{name}"
        if method == "GET":
            rule = sub.rules.get(name.lower())
            if rule is None:
                raise EntityNotFound(f"rule {name} on {sub.name}")
            return 200, entry_xml(self.atom.base, path, rule.name, rule_xml(rule), rule.created_at)
        if method == "DELETE":
            ns.delete_rule(topic_name, sub_name, name)
            return 200, ""
        root = ET.fromstring(body)
        description = _find(root, "RuleDescription")
        if description is None:
            raise NotAllowed("request body has no RuleDescription")
        parsed = rule_filter(description)
        if self._is_update():
            rule = sub.rules.get(name.lower())
            if rule is None:
                raise EntityNotFound(f"rule {name} on {sub.name}")
            rule.filter = parsed
            status = 200
        else:
            rule = ns.create_rule(topic_name, sub_name, name, parsed, time.time())
            status = 201
        return status, entry_xml(self.atom.base, path, rule.name, rule_xml(rule), rule.created_at)
