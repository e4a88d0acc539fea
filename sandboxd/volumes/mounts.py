"""
What callers may write about volumes: their names, and the ``volumes`` of a
create body (``[{"name", "path", "read_only"}]``), checked before anything
is touched.
"""

import posixpath
import re

from sandboxd.api.errors import invalid_field

#: Volume names: lower-case letters, digits, ``-``, ``_`` and ``.``,
#: starting with a letter or digit.
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
#: Volumes one sandbox may mount.
MAX_MOUNTS = 8
#: Longest mount path.
MAX_PATH = 256
#: Top-level directories a volume may not hide (the system, the kernel's
#: file systems, the agent's own).
_RESERVED = frozenset(
    "bin boot dev etc lib lib32 lib64 libx32 opt proc run sbin sys usr var".split()
)


def check_name(name, field="name"):
    """
    ``name`` if it is a valid volume name, else a 400 ``INVALID_FIELD``.
    """
    if not isinstance(name, str) or not NAME.match(name):
        raise invalid_field(field, "a volume name: 1 to 63 of a-z, 0-9, '-', '_', '.',"
                                   " starting with a letter or digit")
    return name


def check_path(path, field):
    """
    ``path`` if a volume may be mounted there: absolute, normal (no ``..``,
    no doubled or trailing slash), not ``/`` nor under a system directory.
    """
    if (not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH
            or posixpath.normpath(path) != path or path == "/"
            or not path.isprintable() or ":" in path or "," in path):
        raise invalid_field(field, "an absolute, normal path other than / (no '..', ':' or ',')")
    if path.split("/")[1] in _RESERVED or path in ("/root", "/tmp"):
        raise invalid_field(field, f"{path} is under a system directory")
    return path


def parse_mounts(value):
    """
    The ``volumes`` of a create body as a tuple of ``{"name", "path",
    "read_only"}`` (None: none), each name and path once.
    """
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_MOUNTS:
        raise invalid_field("volumes", f"a list of at most {MAX_MOUNTS} "
                                       '{"name", "path", "read_only"} objects')
    mounts = []
    for i, item in enumerate(value):
        where = f"volumes[{i}]"
        if not isinstance(item, dict):
            raise invalid_field(where, 'must be an object {"name", "path", "read_only"}')
        unknown = sorted(set(item) - {"name", "path", "read_only"})
        if unknown:
            raise invalid_field(f"{where}.{unknown[0]}", "unknown field")
        read_only = item.get("read_only", False)
        if not isinstance(read_only, bool):
            raise invalid_field(f"{where}.read_only", "must be true or false")
        mounts.append({
            "name": check_name(item.get("name"), f"{where}.name"),
            "path": check_path(item.get("path"), f"{where}.path"),
            "read_only": read_only,
        })
    for key in ("name", "path"):
        values = [m[key] for m in mounts]
        if len(set(values)) != len(values):
            raise invalid_field("volumes", f"each {key} at most once")
    return tuple(mounts)
