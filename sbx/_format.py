"""
Human output of ``sbx``: tables, ages, sizes, file modes.
"""

import datetime
import stat

_UNITS = (("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10))
_FILE_TYPES = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "file": stat.S_IFREG}


def table(headers, rows):
    """
    Left-aligned columns separated by two spaces, trailing blanks stripped.
    """
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = []
    for row in [list(headers)] + rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def parse_time(text):
    """
    An ISO 8601 timestamp ("...Z" allowed) as an aware datetime, or None.
    """
    if not text:
        return None
    try:
        when = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


def age(created, now=None):
    """
    "42s", "5m", "3h", "2d" since ``created`` (an ISO timestamp); "?" if unknown.
    """
    when = parse_time(created)
    if when is None:
        return "?"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return duration(max(0, int((now - when).total_seconds())))


def duration(seconds):
    """
    Seconds as "12.3s" below a minute, else the largest whole unit: "5m",
    "3h", "2d".
    """
    seconds = float(seconds or 0)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{int(seconds // span)}{unit}"
    return f"{seconds:.1f}s" if seconds != int(seconds) else f"{int(seconds)}s"


def size(value):
    """
    Bytes as "512m", "1g" when they divide exactly; other values unchanged.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return "-" if value is None else str(value)
    for unit, span in _UNITS:
        if value >= span and value % span == 0:
            return f"{value // span}{unit}"
    return str(value)


def labels(mapping):
    return ",".join(f"{k}={v}" for k, v in sorted((mapping or {}).items())) or "-"


def file_mode(kind, mode):
    """
    ``ls -l`` style mode string, e.g. "drwxr-xr-x".
    """
    return stat.filemode(_FILE_TYPES.get(kind, 0) | (int(mode) & 0o7777))


def mtime(seconds):
    try:
        when = datetime.datetime.fromtimestamp(float(seconds), datetime.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
    return when.strftime("%Y-%m-%d %H:%M")
