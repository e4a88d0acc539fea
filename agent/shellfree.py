"""
Command strings that need no shell.

A command given as a string runs as ``/bin/sh -c STRING``.  Most strings
users send are one program with plain arguments (``python3 -c '...'``,
``ls -la /root``): for those the shell only splits words and execs, which
costs a fork and an exec and keeps the Python zygote from taking the
command.  ``argv_without_shell`` gives such a string's argv, split as the
shell would, or None whenever the shell would do anything more: expansions,
redirections, pipes, lists, globs, comments, assignments, builtins and
reserved words, a program it would not find or could not exec as is.
``shell_environment`` is the environment the shell would have passed on
(it sets ``PWD``).
"""

import os
import shlex
import shutil

#: Outside quotes, any of these makes the shell do more than split words.
_SPECIAL = frozenset("$`\\;&|<>(){}[]*?~!#\n\r\t\v\f")
#: Inside double quotes, these still expand.
_SPECIAL_IN_DOUBLE = frozenset("$`\\")
#: Builtins and reserved words of a POSIX shell (dash's, and a few of
#: bash's): run by the shell itself, or unlike the program of that name.
_SHELL_WORDS = frozenset("""
    ! . : [ [[ { } alias bg break case cd command continue do done echo elif else
    esac eval exec exit export false fc fg fi for function getopts hash if in jobs
    kill let local printf pwd read readonly return select set shift source test then
    time times trap true type ulimit umask unalias unset until wait while
""".split())
#: How an executable file starts when the kernel can exec it (not a script
#: without ``#!``, which only a shell runs).
_EXEC_MAGIC = (b"#!", b"\x7fELF")


def _plain(command):
    """
    Whether ``command`` uses nothing of the shell but quoting and spaces.
    """
    quote = None
    for char in command:
        if quote == "'":
            if char == "'":
                quote = None
        elif quote == '"':
            if char == '"':
                quote = None
            elif char in _SPECIAL_IN_DOUBLE:
                return False
        elif char in "'\"":
            quote = char
        elif char in _SPECIAL:
            return False
    return quote is None


def _executable(program, env, cwd):
    """
    The file exec would run for ``program`` (from ``cwd``, with ``env``'s
    PATH), if the kernel can exec it directly; else None.
    """
    if "/" in program:
        path = os.path.join(cwd, program)
        found = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    else:
        search = env.get("PATH", os.defpath)
        if not all(os.path.isabs(entry) for entry in search.split(os.pathsep)):
            return None  # a relative entry is relative to the command's cwd
        found = shutil.which(program, path=search)
    if found is None:
        return None
    try:
        with open(found, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    return found if head.startswith(_EXEC_MAGIC) else None


def argv_without_shell(command, env, cwd):
    """
    The argv ``/bin/sh -c command`` would exec (in ``cwd``, with ``env``),
    when the shell would do nothing else; None otherwise.
    """
    if not _plain(command):
        return None
    words = shlex.split(command)
    if not words or words[0] in _SHELL_WORDS or "=" in words[0]:
        return None
    if _executable(words[0], env, cwd) is None:
        return None
    return words


def shell_environment(env, cwd):
    """
    ``env`` as a POSIX shell started in ``cwd`` exports it: ``PWD`` is kept
    when it names ``cwd``, else set to the physical path of ``cwd``.
    """
    pwd = env.get("PWD")
    try:
        if pwd and os.path.isabs(pwd) and os.path.samefile(pwd, cwd):
            return env
    except OSError:
        pass
    return {**env, "PWD": os.path.realpath(cwd)}
