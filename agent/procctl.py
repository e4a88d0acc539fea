"""
process.signal, process.resize and process.list: acting on the processes
the agent runs (by pid, from any connection), answered on the spot.
"""

from . import params as p
from .errors import RequestError

SIGNAL_SPEC = {
    "pid": (p.count, p.REQUIRED),
    "signal": (p.signal_number, "SIGTERM"),
    "group": (p.boolean, True),
}
RESIZE_SPEC = {
    "pid": (p.count, p.REQUIRED),
    "cols": (p.count, p.REQUIRED),
    "rows": (p.count, p.REQUIRED),
}


def _find(agent, pid):
    run = agent.processes.get(pid)
    if run is None:
        raise RequestError("ESRCH", f"no process {pid} run by the agent", pid=pid)
    return run


def send_signal(agent, args):
    """
    Signal a process (by default its whole process group).
    """
    run = _find(agent, args["pid"])
    signum = args["signal"]
    if isinstance(signum, str):
        signum = p.signal_number("signal", signum)
    try:
        run.signal(signum, args["group"])
    except ProcessLookupError:
        raise RequestError("ESRCH", f"process {args['pid']} has exited", pid=args["pid"])
    return {}


def resize(agent, args):
    """
    Set the terminal size of a process started with a pty.
    """
    cols, rows = p.terminal_size("size", {"cols": args["cols"], "rows": args["rows"]})
    run = _find(agent, args["pid"])
    if not run.resize(cols, rows):
        raise RequestError("ENOTTY", f"process {args['pid']} has no terminal", pid=args["pid"])
    return {}


def list_processes(agent, args):
    """
    The pids of the processes the agent runs, and whether each has a pty.
    """
    return {
        "processes": [
            {"pid": pid, "pty": run.has_pty} for pid, run in sorted(agent.processes.items())
        ]
    }
