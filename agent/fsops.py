"""
fs.mkdir, fs.remove and fs.rename: the operations on names rather than
content.  A recursive remove and a rename across filesystems (a copy) run
in the agent's I/O threads.
"""

import asyncio
import errno
import os
import shutil
import stat

from . import params as p
from .errors import RequestError, from_oserror

MKDIR_SPEC = {
    "path": (p.path, p.REQUIRED),
    "parents": (p.boolean, False),
    "mode": (p.file_mode, 0o755),
}
REMOVE_SPEC = {
    "path": (p.path, p.REQUIRED),
    "recursive": (p.boolean, False),
}
RENAME_SPEC = {
    "src": (p.path, p.REQUIRED),
    "dst": (p.path, p.REQUIRED),
    "overwrite": (p.boolean, True),
}


def mkdir(agent, args):
    """
    fs.mkdir, answered on the spot.  With ``parents`` an existing directory
    is fine (as ``mkdir -p``); without, it is EEXIST.
    """
    path = agent.resolve(args["path"])
    mode = args["mode"]
    try:
        if args["parents"]:
            _makedirs(path, mode)
        else:
            os.mkdir(path, mode)
            os.chmod(path, mode)  # exactly ``mode``, whatever the umask
    except OSError as e:
        raise from_oserror(e, e.filename or path)
    return {"path": path}


def _makedirs(path, mode):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/"))
        if parent and parent != path:
            _makedirs(parent, mode)
        try:
            os.mkdir(path, mode)
            os.chmod(path, mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
        return
    if not stat.S_ISDIR(st.st_mode):
        raise FileExistsError(errno.EEXIST, "File exists", path)


async def remove(agent, stream, args):
    """
    fs.remove: a file, a symlink (never what it points to), an empty
    directory, or with ``recursive`` a whole tree.
    """
    path = agent.resolve(args["path"])
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
        elif not args["recursive"]:
            os.rmdir(path)
        else:
            await asyncio.wrap_future(agent.executor.submit(_rmtree, path))
    except OSError as e:
        raise from_oserror(e, e.filename or path)
    return {}


def _rmtree(path):
    def fail(function, name, excinfo):
        error = excinfo[1]
        if isinstance(error, FileNotFoundError):
            return  # removed by someone else meanwhile
        if isinstance(error, OSError) and error.filename is None:
            error.filename = name
        raise error

    shutil.rmtree(path, onerror=fail)


async def rename(agent, stream, args):
    """
    fs.rename ``src`` to ``dst``; across filesystems a copy then a remove.
    Without ``overwrite`` an existing ``dst`` is EEXIST.
    """
    src = agent.resolve(args["src"])
    dst = agent.resolve(args["dst"])
    try:
        os.lstat(src)
        if not args["overwrite"] and os.path.lexists(dst):
            raise RequestError("EEXIST", f"File exists: {dst}", path=dst)
        try:
            os.rename(src, dst)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            await asyncio.wrap_future(agent.executor.submit(shutil.move, src, dst))
    except OSError as e:
        raise from_oserror(e, e.filename or src)
    return {"src": src, "dst": dst}
