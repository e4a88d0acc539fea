"""
User processes go first when a sandbox runs out of memory.  The server,
under the agent's PID 1, gives itself the highest ``oom_score_adj``; every
process it starts (and the Python zygote's forks) inherits it, at no cost
per command.  PID 1 keeps 0, so the kernel's OOM killer takes any of those
before it; should it take the server, PID 1 starts it again.  (Lowering
PID 1's score would need a capability the sandbox does not have; a process
may lower its own score back to 0, which the kernel allows.)
"""

#: The score of the server and of all it starts.
USER_OOM_SCORE_ADJ = 1000


def prefer_as_oom_victim(pid="self"):
    """
    Make ``pid`` (and what it starts from now on) the OOM killer's first
    choice; no error where /proc does not allow it.
    """
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(USER_OOM_SCORE_ADJ))
    except OSError:
        pass
