"""
The code interpreter of the SDK (``sbx.code.run``, sandbox/_code.py and
the kernel sandbox/_kernel.py) in a real sandbox of the ``python`` profile
(sandbox-python:latest) behind a real ``twistd -n sandboxd``.
"""

import asyncio

from twisted.trial.unittest import SynchronousTestCase

from sandbox import SandboxError, SandboxTimeoutError, create_sandbox
from tests.mcputil import decode_png, python_daemon


class CodeInterpreterTests(SynchronousTestCase):
    """
    ``sbx.code`` against the real agent.
    """

    def setUp(self):
        self.daemon = python_daemon()

    def scenario(self, body):
        async def run():
            sbx = await create_sandbox(profile="python", endpoint=self.daemon.endpoint)
            try:
                return await asyncio.wait_for(body(sbx), 180)
            finally:
                await sbx.destroy()

        return asyncio.run(run())

    def test_state_persists(self):
        """
        A variable, an import and a function defined in one run are used by
        the next; stdout, stderr and the last expression come back apart.
        """

        async def body(sbx):
            first = await sbx.code.run("import math\nx = 20\ndef twice(v):\n    return 2 * v\n")
            second = await sbx.code.run(
                "import sys\nprint('out', x)\nprint('err', file=sys.stderr)\ntwice(x) + math.floor(2.5)"
            )
            return first, second

        first, second = self.scenario(body)
        self.assertTrue(first.ok)
        self.assertIsNone(first.result)
        self.assertEqual(second.stdout, "out 20\n")
        self.assertEqual(second.stderr, "err\n")
        self.assertEqual(second.text, "42")

    def test_error_traceback_keeps_state(self):
        """
        An exception comes back as name, value and a traceback of the
        user's code (no kernel frames); the context lives on.
        """

        async def body(sbx):
            await sbx.code.run("y = 7")
            failed = await sbx.code.run("def f():\n    return 1 / 0\nf()")
            after = await sbx.code.run("y")
            return failed, after

        failed, after = self.scenario(body)
        self.assertFalse(failed.ok)
        self.assertEqual(failed.error["name"], "ZeroDivisionError")
        self.assertIn('File "<cell>", line 2, in f', failed.error["traceback"])
        self.assertNotIn("_kernel", failed.error["traceback"])
        self.assertEqual(after.text, "7")

    def test_matplotlib_png(self):
        """
        A matplotlib figure drawn in a run comes back as a PNG that decodes
        to the figure's size (4 x 3 inches at 50 dpi).
        """

        async def body(sbx):
            return await sbx.code.run(
                "import matplotlib.pyplot as plt\n"
                "fig = plt.figure(figsize=(4, 3), dpi=50)\n"
                "plt.plot([1, 2, 3], [1, 4, 9])\n"
                "None"
            )

        result = self.scenario(body)
        self.assertTrue(result.ok, result.error)
        self.assertEqual(len(result.images), 1)
        mime, png = result.images[0]
        self.assertEqual(mime, "image/png")
        self.assertEqual(decode_png(png), (200, 150))

    def test_dataframe_html(self):
        """
        A pandas DataFrame as the last expression comes back as text and
        as an HTML table.
        """

        async def body(sbx):
            return await sbx.code.run(
                "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})"
            )

        result = self.scenario(body)
        self.assertTrue(result.ok, result.error)
        self.assertIn("a  b", result.text)
        self.assertIn("<table", result.html)
        self.assertIn("<td>y</td>", result.html)

    def test_timeout_interrupts_keeps_state(self):
        """
        A ``while True`` loop is interrupted at the timeout (KeyboardInterrupt,
        ``timed_out``), and the next run still sees the state from before,
        and what the loop did before it was stopped.
        """

        async def body(sbx):
            await sbx.code.run("n = 0\nkept = 'old'")
            stuck = await sbx.code.run("while True:\n    n += 1", timeout=2)
            after = await sbx.code.run("(kept, n > 0)")
            return stuck, after

        stuck, after = self.scenario(body)
        self.assertTrue(stuck.timed_out)
        self.assertEqual(stuck.error["name"], "KeyboardInterrupt")
        self.assertEqual(after.text, "('old', True)")
        self.assertFalse(after.timed_out)

    def test_named_contexts(self):
        """
        Named contexts are separate interpreters: a name defined in one is
        unknown in another; ``reset`` ends a context and its state.
        """

        async def body(sbx):
            await sbx.code.run("v = 'a'", context="a")
            other = await sbx.code.run("v", context="b")
            names = sbx.code.contexts()
            await sbx.code.reset("a")
            fresh = await sbx.code.run("'v' in dir()", context="a")
            return other, names, fresh

        other, names, fresh = self.scenario(body)
        self.assertEqual(other.error["name"], "NameError")
        self.assertEqual(names, ["a", "b"])
        self.assertEqual(fresh.text, "False")

    def test_output_limit(self):
        """
        Output past ``max_output`` is cut and the cut counted; the exited
        interpreter (``os._exit``) is a named error and the next run starts
        a fresh one.
        """

        async def body(sbx):
            big = await sbx.code.run("print('x' * 10000, end='')", max_output=100)
            try:
                await sbx.code.run("import os\nos._exit(3)")
            except SandboxError as e:
                exited = e
            again = await sbx.code.run("1 + 1")
            return big, exited, again

        big, exited, again = self.scenario(body)
        self.assertEqual(big.stdout, "x" * 100)
        self.assertEqual(big.stdout_cut, 9900)
        self.assertEqual(exited.code, "INTERPRETER_EXITED")
        self.assertEqual(again.text, "2")

    def test_unstoppable_code_killed(self):
        """
        Code that swallows the interrupt is killed after the grace period:
        SandboxTimeoutError ``INTERPRETER_KILLED``, and the next run starts
        a fresh interpreter (the old names are gone).
        """

        async def body(sbx):
            await sbx.code.run("import time\nold = 1")
            try:
                await sbx.code.run(
                    "while True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass",
                    timeout=1,
                )
            except SandboxTimeoutError as e:
                killed = e
            fresh = await sbx.code.run("'old' in dir()")
            return killed, fresh

        killed, fresh = self.scenario(body)
        self.assertEqual(killed.code, "INTERPRETER_KILLED")
        self.assertEqual(fresh.text, "False")
