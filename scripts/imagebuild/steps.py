"""
Running one build step: its output goes to a log file, the lines that
matter (and a status line every HEARTBEAT seconds) to the terminal, each
with the step's elapsed time; a failure raises L{Failed} naming the step.
"""

import os
import subprocess
import sys
import threading
import time

HEARTBEAT = 15.0


class Failed(Exception):
    """
    A build step failed: C{image}, C{step}, C{reason} and its C{log} path.
    """

    def __init__(self, image, step, reason, log=None, elapsed=0.0):
        super().__init__(f"{image}: {step}: {reason}")
        self.image = image
        self.step = step
        self.reason = reason
        self.log = log
        self.elapsed = elapsed


class Reporter:
    """
    Prints progress lines (flushed at once: CI logs show them as they
    come) and names the log files of steps in C{logdir}.
    """

    def __init__(self, logdir, out=None):
        self.logdir = logdir
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def say(self, image, text, elapsed=None):
        clock = f"[{elapsed:5.0f}s] " if elapsed is not None else ""
        with self._lock:
            self.out.write(f"build-images: {image}: {clock}{text}\n")
            self.out.flush()

    def log_path(self, image, step):
        return os.path.join(self.logdir, f"{image}-{step.replace(' ', '-')}.log")

    def failed(self, error, lines=25):
        """
        Report L{Failed} C{error}: the step, the end of its log, where the
        logs are kept.
        """
        err = sys.stderr
        err.write(f"build-images: FAILED at {error.image}: {error.step} after "
                  f"{error.elapsed:.0f} s: {error.reason}\n")
        if error.log and os.path.exists(error.log):
            with open(error.log, errors="replace") as f:
                tail = f.readlines()[-lines:]
            err.write(f"build-images: last lines of {error.log}:\n")
            err.writelines("    " + line for line in tail)
        err.write(f"build-images: logs kept in {self.logdir}\n")
        err.flush()


def run_step(reporter, image, step, argv, watcher=None, feed=None, env=None):
    """
    Run C{argv} as step C{step} of C{image}, output to the step's log.

    C{watcher.line(text)} sees every output line and returns a line to
    print at once (or None); C{watcher.status()} is printed every HEARTBEAT
    seconds while it changes (or a plain "running" note).  C{feed(stdin)},
    when given, writes the child's standard input from this thread and
    closes it.  C{env}: the child's environment (default: ours).  Raise L{Failed} when the command cannot start or exits
    non-zero.
    """
    log_path = reporter.log_path(image, step)
    started = time.monotonic()
    reporter.say(image, f"{step}: started")
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
            )
        except OSError as e:
            raise Failed(image, step, f"cannot run {argv[0]}: {e}", log_path)
        done = threading.Event()
        heartbeat = threading.Thread(
            target=_heartbeat, args=(reporter, image, step, watcher, started, done), daemon=True)
        heartbeat.start()
        feeding = None
        if feed:
            feeding = threading.Thread(target=_feed, args=(feed, child.stdin), daemon=True)
            feeding.start()
        for raw in child.stdout:
            log.write(raw)
            if watcher is not None:
                shown = watcher.line(raw.decode(errors="replace").rstrip())
                if shown:
                    reporter.say(image, f"{step}: {shown}", time.monotonic() - started)
        code = child.wait()
        if feeding is not None:
            feeding.join()
        done.set()
        heartbeat.join()
    elapsed = time.monotonic() - started
    if code != 0:
        raise Failed(image, step, f"{os.path.basename(argv[0])} exited with {code}",
                     log_path, elapsed)
    reporter.say(image, f"{step}: finished", elapsed)
    return elapsed


def _feed(feed, stdin):
    try:
        feed(stdin)
    except BrokenPipeError:
        pass  # The child died; its exit code tells why.
    finally:
        try:
            stdin.close()
        except BrokenPipeError:
            pass


def _heartbeat(reporter, image, step, watcher, started, done):
    last = None
    while not done.wait(HEARTBEAT):
        status = watcher.status() if watcher is not None else None
        if status != last or status is None:
            reporter.say(image, f"{step}: {status or 'running'}", time.monotonic() - started)
            last = status
