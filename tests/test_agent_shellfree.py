"""
Command strings that need no shell run without one (agent/shellfree.py):
which strings qualify, and, through a real agent, that a corpus of commands
gives the same stdout, stderr and exit status either way.
"""

import os
import shlex
import stat

from twisted.trial.unittest import SynchronousTestCase

from agent.shellfree import argv_without_shell

from .agent_helpers import AGENT_PYTHON
from .test_agent import AgentTestCase

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
PY = shlex.quote(AGENT_PYTHON)

#: Commands run both as a string and through ``sh -c``.
CORPUS = [
    "ls -ld / /etc",
    "cat /etc/hostname",
    "cat /nonexistent",
    "ls 'a b' \"c d\"",
    "nosuchcommand-xyz",
    "/nonexistent/prog",
    "head -c 12 /etc/passwd",
    "wc -c /etc/passwd",
    "stat -c %a /",
    "grep -c root /etc/passwd",
    "expr 1 + 2",
    "expr 1 / 0",
    "id -u",
    "printenv PWD",
    "printenv X",
    "cat",
    "sh -c 'exit 3'",
    "echo one two",
    "true",
    "false",
    "printf '%s|' a b",
    "ls /e*",
    "X=2 printenv X",
    "echo $X",
    "ls ~",
    "cat < /etc/hostname",
    "echo a; echo b",
    "exit 5",
    f"{PY} -c 'print(6*7)'",
    f"{PY} -c 'import sys; print(sys.argv[1:])' one 'two three' \"\"",
    f"{PY} -c 'import sys; sys.exit(4)'",
    f"{PY} -c 'raise SystemExit(\"boom\")'",
    f"{PY} -c 'import os, sys; print(sys.stdin.read(), os.getcwd(), os.environ[\"X\"])'",
]


class ClassifierTests(SynchronousTestCase):
    """
    ``argv_without_shell``: the argv when the shell would only split words
    and exec, else None.
    """

    def test_plain(self):
        """
        A program with plain, quoted and empty arguments: its argv, as the
        shell would split it (quotes inside the other kind are literal).
        """
        cases = {
            "ls -la /root": ["ls", "-la", "/root"],
            "python3 -c 'print(6*7)'": ["python3", "-c", "print(6*7)"],
            "cat 'a b' \"c d\" ''": ["cat", "a b", "c d", ""],
            "ls '$HOME' \"it's\"": ["ls", "$HOME", "it's"],
            "env A=1": ["env", "A=1"],
            "  ls  ": ["ls"],
        }
        for command, argv in cases.items():
            self.assertEqual(argv_without_shell(command, ENV, "/"), argv, command)

    def test_shell_needed(self):
        """
        Expansions, redirections, pipes, lists, globs, comments, escapes,
        assignments, builtins and reserved words, unterminated quotes, tabs
        and newlines: the shell runs them.
        """
        for command in [
            "echo $HOME", "ls \"$HOME\"", "echo `id`", "ls \"`id`\"", "ls > f", "ls < f",
            "ls | wc", "ls; ls", "ls && ls", "ls &", "(ls)", "{ ls; }", "ls *", "ls ?",
            "ls [ab]", "ls ~", "ls # note", "ls \\ a", "ls \"a\\b\"", "A=1 ls", "cd /",
            "echo hi", "printf x", "exit 3", "export A", "true", "if true; then ls; fi",
            "! ls", "ls 'open", "ls\tx", "ls\nls", "", "   ", "''",
        ]:
            self.assertIsNone(argv_without_shell(command, ENV, "/"), command)

    def test_program_must_exec(self):
        """
        A program the shell would not find, a file that is not executable, a
        script without ``#!`` (only a shell runs it) and a PATH with a
        relative entry go to the shell; an executable script with ``#!`` and
        an ELF binary do not.  A relative path is looked up from the
        command's cwd.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        files = {"bare": b"echo hi\n", "shebang": b"#!/bin/sh\necho hi\n", "plain": b"#!/bin/sh\n"}
        for name, content in files.items():
            path = os.path.join(directory, name)
            with open(path, "wb") as f:
                f.write(content)
            if name != "plain":
                os.chmod(path, stat.S_IRWXU)
        self.assertIsNone(argv_without_shell("./bare", ENV, directory))
        self.assertIsNone(argv_without_shell("./plain", ENV, directory))
        self.assertEqual(argv_without_shell("./shebang x", ENV, directory), ["./shebang", "x"])
        self.assertIsNone(argv_without_shell("./shebang", ENV, "/"))
        self.assertIsNone(argv_without_shell("no-such-program-xyz", ENV, "/"))
        self.assertEqual(argv_without_shell("ls", ENV, "/"), ["ls"])
        self.assertIsNone(argv_without_shell("ls", {"PATH": "bin:/usr/bin:/bin"}, "/"))


class SameResultsTests(AgentTestCase):
    """
    Through a real agent: every corpus command gives the same stdout,
    stderr and exit status as a string (run without a shell when it needs
    none) and through ``sh -c``.
    """

    def run_both(self, command):
        params = dict(cwd=self.tmp, stdin="in", env={"X": "1"})
        direct = self.exec(command, **params)
        shell = self.exec(["sh", "-c", command], **params)
        return direct, shell

    def test_corpus(self):
        """
        Same stdout, stderr and exit code for every command of the corpus.
        """
        def seen(reply):
            # The shell names itself as it was called: /bin/sh or sh.
            return (reply.stdout, reply.stderr.replace(b"/bin/sh: 1: ", b"sh: 1: "),
                    reply.result["exit_code"])

        for command in CORPUS:
            direct, shell = self.run_both(command)
            self.assertEqual(seen(direct), seen(shell), command)

    def test_killed_by_a_signal(self):
        """
        The one difference, documented in docs/agent.md: a program killed by
        a signal has the same exit status (128 + n), but no shell is left
        to add its ``Terminated`` line to stderr.
        """
        direct, shell = self.run_both("sh -c 'kill -TERM $$'")
        self.assertEqual(direct.result["exit_code"], 143)
        self.assertEqual(shell.result["exit_code"], 143)
        self.assertEqual((direct.stderr, shell.stderr), (b"", b"Terminated\n"))

    def test_environment(self):
        """
        The same variables with the same values (the shell lists them in
        another order); ``PWD`` is the command's cwd, as the shell sets it.
        """
        direct, shell = self.run_both("env")
        self.assertEqual(sorted(direct.stdout.splitlines()), sorted(shell.stdout.splitlines()))
        self.assertIn(f"PWD={os.path.realpath(self.tmp)}".encode(), direct.stdout.splitlines())

    def test_snippet_reaches_the_zygote(self):
        """
        A ``python3 -c`` string that needs no shell is forked off the
        zygote (its parent is neither the agent nor a shell), as the argv
        form is.
        """
        code = "import os; print(os.getppid())"
        as_string = int(self.exec(f"{PY} -c {shlex.quote(code)}").stdout)
        as_argv = int(self.exec([AGENT_PYTHON, "-c", code]).stdout)
        self.assertEqual(as_string, as_argv)
        self.assertNotEqual(as_string, self.agent.pid)
