"""
Strict validation of request parameters.

A method declares a spec: ``{name: (check, default)}`` where ``check(name,
value)`` returns the value (possibly converted) or raises BAD_PARAMS, and
``default`` is REQUIRED or the value used when the parameter is absent or
null.  Unknown parameters are BAD_PARAMS.
"""

import math

from .errors import bad_param

REQUIRED = object()


def parse(params, spec):
    """
    Check ``params`` (a dict) against ``spec``; the full argument dict.
    """
    for name in params:
        if name not in spec:
            raise bad_param(name, "unknown parameter")
    args = {}
    for name, (check, default) in spec.items():
        value = params.get(name)
        if value is None:
            if default is REQUIRED:
                raise bad_param(name, "required")
            args[name] = default
        else:
            args[name] = check(name, value)
    return args


def _no_nul(name, text):
    if "\0" in text:
        raise bad_param(name, "contains a NUL character")
    return text


def string(name, value):
    if not isinstance(value, str):
        raise bad_param(name, "must be a string")
    return _no_nul(name, value)


def path(name, value):
    """
    A non-empty path without NUL.
    """
    if not isinstance(value, str) or not value:
        raise bad_param(name, "must be a non-empty string")
    return _no_nul(name, value)


def command(name, value):
    """
    A shell command string (run by /bin/sh -c) or an argv list; the argv.
    """
    if isinstance(value, str):
        if not value:
            raise bad_param(name, "must not be empty")
        return ["/bin/sh", "-c", _no_nul(name, value)]
    if not isinstance(value, list) or not value:
        raise bad_param(name, "must be a string or a non-empty list of strings")
    for item in value:
        if not isinstance(item, str):
            raise bad_param(name, "must be a string or a non-empty list of strings")
        _no_nul(name, item)
    return value


def string_map(name, value):
    """
    An object of string to string, usable as environment variables.
    """
    if not isinstance(value, dict):
        raise bad_param(name, "must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise bad_param(name, f"value of {key!r} must be a string")
        if not key or "=" in key or "\0" in key:
            raise bad_param(name, f"invalid name {key!r}")
        _no_nul(name, item)
    return value


def string_list(name, value):
    """
    A list of strings.
    """
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_param(name, "must be a list of strings")
    for item in value:
        _no_nul(name, item)
    return value


def text_bytes(name, value):
    """
    A string, returned as its UTF-8 bytes.
    """
    if not isinstance(value, str):
        raise bad_param(name, "must be a string")
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise bad_param(name, "is not valid Unicode")


def boolean(name, value):
    if not isinstance(value, bool):
        raise bad_param(name, "must be a boolean")
    return value


def seconds(name, value):
    """
    A finite, non-negative number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_param(name, "must be a number")
    if not math.isfinite(value) or value < 0:
        raise bad_param(name, "must be a finite number >= 0")
    return value


def count(name, value):
    """
    An integer >= 0.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_param(name, "must be an integer")
    if value < 0:
        raise bad_param(name, "must be >= 0")
    return value


def positive(name, value):
    """
    An integer >= 1.
    """
    value = count(name, value)
    if value < 1:
        raise bad_param(name, "must be >= 1")
    return value


def file_mode(name, value):
    """
    Permission bits, 0 .. 0o7777.
    """
    value = count(name, value)
    if value > 0o7777:
        raise bad_param(name, "must be at most 0o7777")
    return value


def terminal_size(name, value):
    """
    ``{"cols": n, "rows": n}`` (1 .. 65535 each); the (cols, rows) pair.
    """
    if not isinstance(value, dict) or set(value) - {"cols", "rows"}:
        raise bad_param(name, 'must be an object {"cols": n, "rows": n}')
    size = []
    for key, default in (("cols", 80), ("rows", 24)):
        item = value.get(key, default)
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 65535:
            raise bad_param(name, f"{key} must be an integer from 1 to 65535")
        size.append(item)
    return tuple(size)


def signal_number(name, value):
    """
    A signal: a number, or a name with or without "SIG" ("TERM", "SIGKILL").
    """
    import signal

    if isinstance(value, str):
        text = value.upper()
        if not text.startswith("SIG"):
            text = "SIG" + text
        number = getattr(signal.Signals, text, None) if text.isidentifier() else None
        if number is None:
            raise bad_param(name, f"unknown signal {value!r}")
        return int(number)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise bad_param(name, "must be a signal name or a number from 1 to 64")
    return value
