"""
Parsing and checking request bodies.
"""

import json
import math
from datetime import datetime

import attr

from sandboxd.api.errors import ApiError, invalid_field, limit_exceeded
from sandboxd.config import parse_size
from sandboxd.egress.policy import parse_network
from sandboxd.egress.secrets import parse_secrets
from sandboxd.sandbox import iso_time
from sandboxd.volumes.mounts import parse_mounts

MAX_BODY = 1 << 20
MAX_LABELS = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 256
MAX_EVENT_PAGE = 1000

_CREATE_FIELDS = frozenset({
    "profile", "template", "memory", "cpu", "storage", "ttl", "labels",
    "ttl_action", "expires_at", "volumes", "network", "secrets",
})


@attr.s(frozen=True, auto_attribs=True)
class CreateRequest:
    profile: str = None
    template: str = None
    memory: int = None
    cpu: float = None
    storage: int = None
    ttl: int = 0
    labels: dict = attr.ib(factory=dict)
    ttl_action: str = None
    expires_at: float = None
    volumes: tuple = ()
    network: object = None  # a NetworkPolicy, None: the profile's
    secrets: dict = attr.ib(factory=dict, repr=False)  # name -> SecretSpec


def read_json_object(request):
    """
    The request body as a dict; an empty body is {}.
    """
    raw = request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "BODY_TOO_LARGE", f"the body exceeds {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, "INVALID_BODY", f"the body is not valid JSON: {e}")
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_BODY", "the body must be a JSON object")
    return body


def parse_create(body, limits, now=0.0):
    """
    A CreateRequest from a POST /sandboxes body, checked against limits
    (``now``: the POSIX time ``expires_at`` must come after).
    """
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise invalid_field(unknown[0], "unknown field")
    profile = _optional_string(body, "profile")
    template = _optional_string(body, "template")
    memory = _optional_size(body, "memory")
    if memory is not None and memory > limits.max_memory:
        raise limit_exceeded(
            "memory", body["memory"], limits.max_memory, "limits.max_memory"
        )
    storage = _optional_size(body, "storage")
    cpu = body.get("cpu")
    if cpu is not None:
        if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0:
            raise invalid_field("cpu", "must be a positive number of CPUs")
        cpu = float(cpu)
        if cpu > limits.max_cpu:
            raise limit_exceeded("cpu", cpu, limits.max_cpu, "limits.max_cpu")
    ttl = _ttl(body, limits) or 0
    return CreateRequest(
        profile=profile,
        template=template,
        memory=memory,
        cpu=cpu,
        storage=storage,
        ttl=ttl,
        labels=_labels(body.get("labels")),
        ttl_action=_ttl_action(body),
        expires_at=parse_expires_at(body, limits, now),
        volumes=parse_mounts(body.get("volumes")),
        network=_network(body),
        secrets=_secrets(body),
    )


def _ttl_action(body):
    action = body.get("ttl_action")
    if action is not None and action not in ("destroy", "pause"):
        raise invalid_field("ttl_action", "must be \"destroy\" or \"pause\"")
    return action


def parse_expires_at(body, limits, now):
    """
    A body's ``expires_at`` (ISO 8601 with a zone, e.g.
    ``2026-12-02T18:00:00Z``) as a POSIX time, or None when absent: after
    ``now`` and at most ``limits.max_ttl`` seconds after it.
    """
    text = body.get("expires_at")
    if text is None:
        return None
    when = None
    if isinstance(text, str) and len(text) <= 64:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
    if when is None or when.tzinfo is None:
        raise invalid_field("expires_at", "must be an ISO 8601 time with a zone, as "
                            "2026-12-02T18:00:00Z")
    seconds = when.timestamp()
    if seconds <= now:
        raise invalid_field("expires_at", f"{text} is not in the future")
    if seconds - now > limits.max_ttl:
        raise limit_exceeded("expires_at", f"{math.ceil(seconds - now)} s away",
                             limits.max_ttl, "limits.max_ttl")
    return seconds


def _network(body):
    """A body's ``network`` as a NetworkPolicy (None when absent)."""
    if body.get("network") is None:
        return None
    try:
        return parse_network(body["network"])
    except ValueError as e:
        raise invalid_field("network", str(e))


def _secrets(body):
    """A body's ``secrets`` as {name: SecretSpec} ({} when absent)."""
    if body.get("secrets") is None:
        return {}
    try:
        return parse_secrets(body["secrets"])
    except ValueError as e:
        # The message never quotes a value (sandboxd/egress/secrets.py).
        raise invalid_field("secrets", str(e))


def _ttl(body, limits):
    """A body's ``ttl`` (None when absent), within ``limits.max_ttl``."""
    ttl = body.get("ttl")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
        raise invalid_field("ttl", "must be a whole number of seconds >= 0")
    if ttl > limits.max_ttl:
        raise limit_exceeded("ttl", ttl, limits.max_ttl, "limits.max_ttl")
    return ttl


def parse_update(body, labels, limits, now=0.0):
    """
    What a ``PATCH /sandboxes/{id}`` body changes: ``{"ttl": s}``,
    ``{"expires_at": time}`` and ``{"labels": {...}}`` merged into the
    sandbox's ``labels`` as a JSON merge patch (a null value removes that
    label).  A dict holding the changed keys, ``ttl``, ``expires_at`` (a
    POSIX time) and the whole new ``labels``.
    """
    unknown = sorted(set(body) - {"ttl", "labels", "expires_at"})
    if unknown:
        raise invalid_field(unknown[0], "unknown field")
    changes = {}
    expires_at = parse_expires_at(body, limits, now)
    if expires_at is not None:
        changes["expires_at"] = expires_at
    ttl = _ttl(body, limits)
    if ttl is not None:
        changes["ttl"] = ttl
    patch = body.get("labels")
    if patch is not None:
        if not isinstance(patch, dict):
            raise invalid_field("labels", "must be an object of strings (null removes one)")
        merged = dict(labels)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        changes["labels"] = _labels(merged)
    return changes


def parse_pool_count(body, max_warm):
    """
    The ``count`` of a PUT /pools/{profile} body: an integer from 0 to
    ``pool.max_warm``, or null to return the pool to automatic sizing.
    """
    unknown = sorted(set(body) - {"count"})
    if unknown:
        raise invalid_field(unknown[0], "unknown field")
    if "count" not in body:
        raise invalid_field("count", "required (an integer, or null for automatic)")
    count = body["count"]
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise invalid_field("count", "must be a whole number >= 0, or null")
    if count > max_warm:
        raise limit_exceeded("count", count, max_warm, "pool.max_warm")
    return count


def parse_label_filter(values):
    """
    ``?label=k:v`` query values into a dict.
    """
    wanted = {}
    for value in values:
        text = value.decode("utf-8", "replace")
        key, sep, label = text.partition(":")
        if not sep or not key:
            raise invalid_field("label", f"{text!r} is not key:value")
        wanted[key] = label
    return wanted


def parse_count(values, name, default, most):
    """
    A whole-number query parameter (its last value), ``default`` when
    absent, at most ``most`` (None: no cap).
    """
    if not values:
        return default
    text = values[-1].decode("ascii", "replace")
    if not text.isdigit():
        raise invalid_field(name, f"{text!r} is not a whole number >= 0")
    if len(text) > 18:
        # SQLite integers are 64-bit: a longer number cannot be an id.
        raise invalid_field(name, f"{text[:24]!r}... is too large")
    count = int(text)
    if most is not None and count > most:
        raise invalid_field(name, f"at most {most}")
    return count


def event_json(event):
    """
    An event in its public shape: ``{id, type, sandbox_id, identity,
    timestamp, data}`` with an ISO 8601 UTC timestamp.
    """
    return {
        "id": event.id,
        "type": event.type,
        "sandbox_id": event.sandbox_id,
        "identity": event.identity,
        "timestamp": iso_time(event.timestamp),
        "data": event.data,
    }


def _optional_string(body, name):
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid_field(name, "must be a non-empty string")
    return value


def _optional_size(body, name):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise invalid_field(name, "must be a size like '512m' or a number of bytes")
    try:
        size = parse_size(str(value))
    except ValueError as e:
        raise invalid_field(name, str(e))
    if size <= 0:
        raise invalid_field(name, "must be positive")
    return size


def _labels(labels):
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise invalid_field("labels", "must be an object of strings")
    if len(labels) > MAX_LABELS:
        raise invalid_field("labels", f"at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not key or len(key) > MAX_LABEL_KEY:
            raise invalid_field("labels", f"keys take 1 to {MAX_LABEL_KEY} characters")
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise invalid_field(
                f"labels.{key}", f"must be a string of at most {MAX_LABEL_VALUE} characters"
            )
    return dict(labels)
