"""
The request methods the agent serves, with their parameter specs.
"""

from . import envops, files, fsops, net, process, procctl, transfer, watch


class Method:
    """
    A method: ``run(agent, stream, args)`` is a coroutine run as the stream's
    task, or, when ``inline``, a plain ``run(agent, args)`` answered on the
    spot.  ``takes_body``: the client sends DATA and END on the stream.
    """

    __slots__ = ("spec", "run", "inline", "takes_body")

    def __init__(self, spec, run, inline=False, takes_body=False):
        # takes_body: a bool, or a function of the parsed args
        self.spec = spec
        self.run = run
        self.inline = inline
        self.takes_body = takes_body


def ping(agent, args):
    return {}


METHODS = {
    "ping": Method({}, ping, inline=True),
    "process.exec": Method(
        process.EXEC_SPEC, process.run_exec, takes_body=process.stdin_streamed
    ),
    "process.stream": Method(
        process.STREAM_SPEC, process.run_stream, takes_body=process.stdin_streamed
    ),
    "process.spawn": Method(process.SPAWN_SPEC, process.run_spawn, takes_body=True),
    "process.signal": Method(procctl.SIGNAL_SPEC, procctl.send_signal, inline=True),
    "process.resize": Method(procctl.RESIZE_SPEC, procctl.resize, inline=True),
    "process.list": Method({}, procctl.list_processes, inline=True),
    "fs.read": Method(files.READ_SPEC, files.read),
    "fs.write": Method(files.WRITE_SPEC, files.write, takes_body=True),
    "fs.list": Method(files.LIST_SPEC, files.list_dir),
    "fs.stat": Method(files.PATH_SPEC, files.stat_path, inline=True),
    "fs.mkdir": Method(fsops.MKDIR_SPEC, fsops.mkdir, inline=True),
    "fs.remove": Method(fsops.REMOVE_SPEC, fsops.remove),
    "fs.rename": Method(fsops.RENAME_SPEC, fsops.rename),
    "fs.upload": Method(transfer.UPLOAD_SPEC, transfer.upload, takes_body=True),
    "fs.download": Method(transfer.DOWNLOAD_SPEC, transfer.download),
    "fs.watch": Method(watch.WATCH_SPEC, watch.watch),
    "net.fetch": Method(net.FETCH_SPEC, net.fetch),
    "env.get": Method(envops.GET_SPEC, envops.get, inline=True),
    "env.set": Method(envops.SET_SPEC, envops.set_, inline=True),
    "env.delete": Method(envops.DELETE_SPEC, envops.delete, inline=True),
    "env.list": Method(envops.LIST_SPEC, envops.list_, inline=True),
}
