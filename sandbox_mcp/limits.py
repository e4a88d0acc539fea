"""
Output limits of the MCP tools: long text is cut with a note saying how much
was left out; binary content is told apart from text.
"""

import codecs

#: Characters of text a tool returns at most (per output), by default.
DEFAULT_MAX_OUTPUT = 30_000


def truncate(text, limit, hint=""):
    """
    ``text`` cut to ``limit`` characters, with a note of how many were cut
    (and ``hint``, what to do for the rest) when it is longer.
    """
    if limit is None or len(text) <= limit:
        return text
    cut = len(text) - limit
    note = f"\n[... {cut} more characters cut (of {len(text)}){'; ' + hint if hint else ''}]"
    return text[:limit] + note


def note_cut(text, cut_bytes, hint=""):
    """
    ``text`` with a note that ``cut_bytes`` bytes were left out before it
    got here (0: unchanged).
    """
    if not cut_bytes:
        return text
    return f"{text}\n[... {cut_bytes} more bytes cut{'; ' + hint if hint else ''}]"


def is_binary(data, complete=True):
    """
    Whether ``data`` (bytes) is not UTF-8 text: a NUL byte, or bytes that
    do not decode (``complete=False``: ``data`` is a prefix, so a character
    cut at its end does not count).
    """
    if b"\x00" in data[:65536]:
        return True
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        decoder.decode(data, final=complete)
    except UnicodeDecodeError:
        return True
    return False
