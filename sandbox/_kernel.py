"""
The code interpreter's kernel: a persistent Python interpreter that runs in
the sandbox (started by ``sandbox._code`` as ``python3 -u -c <this
source>``; standard library only, Python 3.7+).

Protocol, on the process's own stdin and stdout (which the kernel keeps for
itself on private descriptors, pointing the user's 0 at /dev/null and 1, 2
at files of its own):

- request, one line of JSON: ``{"id": n, "code": "...", "max_output": n}``
- reply, one line of JSON: ``{"id", "stdout", "stderr", "stdout_cut",
  "stderr_cut", "result", "error", "images", "interrupted"}`` where
  ``result`` is None or ``{"text/plain": ..., "text/html": ...}`` (the
  value of the last expression), ``error`` None or ``{"name", "value",
  "traceback"}``, ``images`` a list of ``{"mime", "data"}`` (base64), and the
  ``*_cut`` numbers the bytes of output left out past ``max_output``.
- the first line the kernel writes is ``{"ready": true, "pid": n}``.

SIGINT while code runs raises KeyboardInterrupt in that code (the reply says
``interrupted``); the namespace is kept.  SIGINT between runs is ignored.
"""

import ast
import base64
import io
import json
import os
import signal
import sys
import tempfile
import traceback

DEFAULT_MAX_OUTPUT = 64 * 1024


class Kernel:
    """
    One namespace, the output files, and the private protocol descriptors.
    """

    def __init__(self):
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        self.running = False
        self.requests = os.fdopen(os.dup(0), "rb", buffering=0)
        self.replies = os.fdopen(os.dup(1), "wb", buffering=0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        os.dup2(self.out.fileno(), 1)
        os.dup2(self.err.fileno(), 2)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
        signal.signal(signal.SIGINT, self.on_interrupt)

    def on_interrupt(self, signum, frame):
        if self.running:
            raise KeyboardInterrupt

    def send(self, obj):
        self.replies.write(json.dumps(obj).encode() + b"\n")

    def serve(self):
        self.send({"ready": True, "pid": os.getpid()})
        while True:
            try:
                line = self.requests.readline()
            except KeyboardInterrupt:
                continue
            if not line:
                return
            try:
                request = json.loads(line)
                reply = self.run(request.get("code", ""), request.get("max_output"))
                reply["id"] = request.get("id")
            except KeyboardInterrupt:
                reply = {
                    "id": None,
                    "error": {"name": "KeyboardInterrupt", "value": "", "traceback": ""},
                    "interrupted": True,
                }
            except Exception as e:  # the kernel's own failure, not the user's code's
                reply = {
                    "id": None,
                    "error": {"name": "KernelError", "value": repr(e), "traceback": traceback.format_exc()},
                }
            self.send(reply)

    def run(self, code, max_output=None):
        max_output = DEFAULT_MAX_OUTPUT if max_output is None else int(max_output)
        for f in (self.out, self.err):
            f.seek(0)
            f.truncate()
        result = error = None
        interrupted = False
        try:
            self.running = True
            try:
                result = self.execute(code)
            finally:
                self.running = False
        except KeyboardInterrupt as e:
            interrupted = True
            error = self.describe(e)
        except BaseException as e:  # SystemExit too: the kernel lives on
            error = self.describe(e)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        images = self.figures()
        if result is not None and result.get("image/png"):
            images.append({"mime": "image/png", "data": result.pop("image/png")})
        stdout, stdout_cut = self.collect(self.out, max_output)
        stderr, stderr_cut = self.collect(self.err, max_output)
        return {
            "stdout": stdout,
            "stderr": stderr,
            "stdout_cut": stdout_cut,
            "stderr_cut": stderr_cut,
            "result": result,
            "error": error,
            "images": images,
            "interrupted": interrupted,
        }

    def execute(self, code):
        tree = ast.parse(code, "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<cell>", "exec"), self.namespace)
        if last is None:
            return None
        value = eval(compile(last, "<cell>", "eval"), self.namespace)
        if value is None:
            return None
        self.namespace["_"] = value
        return self.represent(value)

    def represent(self, value):
        shown = {"text/plain": _safe(repr, value)}
        html = getattr(value, "_repr_html_", None)
        if callable(html) and not isinstance(value, type):
            text = _safe(html)
            if isinstance(text, str):
                shown["text/html"] = text
        png = _figure_png(value)
        if png is not None:
            shown["image/png"] = png
        return shown

    def figures(self):
        """
        The open matplotlib figures as PNG (then closed), if pyplot is in use.
        """
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return []
        images = []
        for number in pyplot.get_fignums():
            png = _figure_png(pyplot.figure(number))
            if png is not None:
                images.append({"mime": "image/png", "data": png})
        pyplot.close("all")
        return images

    def describe(self, e):
        lines = traceback.format_exception(type(e), e, e.__traceback__)
        # Leave out the kernel's own frames: the user's code is "<cell>".
        kept = [ln for ln in lines if _KERNEL_FILE not in ln]
        return {"name": type(e).__name__, "value": _safe(str, e), "traceback": "".join(kept)}

    def collect(self, f, limit):
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        data = f.read(limit)
        return data.decode("utf-8", "replace"), size - len(data)


#: How frames of this module name it in tracebacks (run with -c: <string>).
_KERNEL_FILE = '"%s"' % globals().get("__file__", "<string>")


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        return f"<{fn.__name__} failed: {e!r}>"


def _figure_png(value):
    savefig = getattr(value, "savefig", None)
    module = type(value).__module__ or ""
    if not callable(savefig) or not module.startswith("matplotlib"):
        return None
    buffer = io.BytesIO()
    try:
        savefig(buffer, format="png")
    except Exception:
        return None
    return base64.b64encode(buffer.getvalue()).decode()


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    Kernel().serve()
