"""
The error a request fails with, and the mapping of OSError to its POSIX name.
"""

import errno

from .wire import Code

#: The errno names a file or process error may carry (docs/protocol.md).
POSIX_NAMES = frozenset(
    {
        "ENOENT",
        "EACCES",
        "EPERM",
        "EISDIR",
        "ENOTDIR",
        "EEXIST",
        "ENOSPC",
        "EROFS",
        "ENAMETOOLONG",
        "ELOOP",
        "EINVAL",
        "EIO",
        "ENOTEMPTY",
        "EBUSY",
        "EXDEV",
        "ETXTBSY",
        "EMFILE",
        "EFBIG",
        "EDQUOT",
    }
)


class RequestError(Exception):
    """
    A request failed: the stream ends with ERROR ``code`` and ``details``.
    """

    def __init__(self, code, message, **details):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


def bad_param(name, message):
    """
    BAD_PARAMS naming the parameter ``name``.
    """
    return RequestError(Code.BAD_PARAMS, f"{name}: {message}", param=name)


def from_oserror(error, path):
    """
    The RequestError for an OSError about ``path``.

    Errors outside the documented names become EIO; their own name is kept
    in ``"errno"``.
    """
    name = errno.errorcode.get(error.errno, "EIO")
    message = f"{error.strerror or error}: {path}"
    if name in POSIX_NAMES:
        return RequestError(name, message, path=path)
    return RequestError("EIO", message, path=path, errno=name)
