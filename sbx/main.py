"""
``sbx``: the command-line client of sandboxd (docs/cli.md).

This module only parses arguments; the commands (and the SDK, asyncio,
websockets) are imported once a command runs, so ``sbx --help`` is instant.
"""

import argparse
import sys

ENDPOINT_HELP = (
    "daemon endpoint: unix:///path.sock, http://host:port or https://host:port "
    "(default: $SANDBOX_ENDPOINT, else unix:///var/run/sandboxd/sandboxd.sock)"
)


#: ``sbx create``'s ttl: every later ``sbx`` command is a session of its
#: own, so the sandbox must outlive each one.
DEFAULT_TTL = 600


def _label(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label {text!r} is not KEY=VALUE")
    return key, value


def _secret(text):
    name, _, hosts = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"secret {text!r} is not NAME[:HOST,...]")
    return name, [h for h in hosts.split(",") if h]


def _size(text):
    return int(text) if text.isdigit() else text


def _port(text):
    if not text.isdigit() or text.startswith("0") or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def _octal(text):
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"mode {text!r} is not octal") from None


def _volume(text):
    name, sep, rest = text.partition(":")
    path, _, mode = rest.partition(":")
    if not sep or not name or not path or mode not in ("", "ro"):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:PATH[:ro]")
    return {"name": name, "path": path, "read_only": mode == "ro"}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sbx", description="Create and drive sandboxes served by sandboxd."
    )
    parser.add_argument("--endpoint", metavar="URL", help=ENDPOINT_HELP)
    parser.add_argument(
        "--ca-file", metavar="PEM",
        help="CA certificate to verify an https daemon with (default: $SANDBOX_CA_FILE,"
        " else the system's trust store)")
    parser.add_argument(
        "--encrypted", action="store_true",
        help="encrypt the session end to end, so that the daemon sees method names and sizes"
        " only (docs/security.md)")
    parser.add_argument(
        "--pin", metavar="FINGERPRINT",
        help="with --encrypted (implied): refuse any agent key but this one (sha256:...)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    create = commands.add_parser("create", help="create a sandbox, print its id")
    create.add_argument("--profile", help="pool profile (default: the daemon's)")
    create.add_argument("--template", help="template id to start from")
    create.add_argument("--memory", type=_size, help="memory limit, e.g. 1g")
    create.add_argument("--cpu", type=float, help="number of CPUs, e.g. 2")
    create.add_argument("--storage", type=_size, help="writable storage, e.g. 1g")
    create.add_argument(
        "--ttl", type=int, default=DEFAULT_TTL,
        help="seconds the sandbox outlives its last session"
        f" (default {DEFAULT_TTL}; 0 destroys it when a command's session ends)",
    )
    create.add_argument(
        "-l", "--label", dest="labels", type=_label, action="append", default=[],
        metavar="KEY=VALUE", help="label (repeatable)",
    )
    create.add_argument("--ttl-action", choices=("destroy", "pause"),
                        help="what the ttl running out does (default: the profile's)")
    create.add_argument("--expires-at", metavar="TIME",
                        help="destroy it at this ISO 8601 time, e.g. 2026-12-02T18:00:00Z")
    create.add_argument(
        "-v", "--volume", dest="volumes", type=_volume, action="append", default=[],
        metavar="NAME:PATH[:ro]", help="mount a volume (repeatable)")
    create.add_argument(
        "--network", choices=("open", "none"),
        help="what the sandbox may reach (default: the profile's; see --allow)")
    create.add_argument(
        "--allow", action="append", default=[], metavar="ENTRY",
        help="reach only these: host:port, host, IP, IP:port, CIDR, CIDR:port (repeatable)")
    create.add_argument(
        "--secret", dest="secrets", type=_secret, action="append", default=[],
        metavar="NAME[:HOST,...]",
        help="a secret whose value is this shell's $NAME (never on the command line): the"
        " sandbox sees a placeholder, net.fetch to HOSTs gets the value (repeatable)")

    update = commands.add_parser("update", help="change a sandbox's ttl or labels")
    update.add_argument("id", metavar="ID")
    update.add_argument("--ttl", type=int, help="seconds the sandbox outlives its last session")
    update.add_argument(
        "-l", "--label", dest="labels", type=_label, action="append", default=[],
        metavar="KEY=VALUE", help="set a label (repeatable)",
    )
    update.add_argument(
        "--unlabel", action="append", default=[], metavar="KEY",
        help="remove a label (repeatable)",
    )
    update.add_argument("--expires-at", metavar="TIME",
                        help="destroy it at this ISO 8601 time, e.g. 2026-12-02T18:00:00Z")
    update.add_argument("--json", action="store_true", help="print the sandbox's JSON")

    for name, what in (("pause", "freeze sandboxes, keeping memory and processes"),
                       ("resume", "thaw paused sandboxes")):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("ids", nargs="+", metavar="ID")

    volume = commands.add_parser("volume", help="volumes: create, list, remove")
    volume_commands = volume.add_subparsers(dest="volume_command", metavar="COMMAND",
                                            required=True)
    vcreate = volume_commands.add_parser("create", help="create an empty volume")
    vcreate.add_argument("name", metavar="NAME")
    vcreate.add_argument("--size", required=True, type=_size, help="its size cap, e.g. 1g")
    vls = volume_commands.add_parser("ls", help="list volumes")
    vls.add_argument("--json", action="store_true", help="print the JSON list")
    vrm = volume_commands.add_parser("rm", help="delete volumes and their data")
    vrm.add_argument("names", nargs="+", metavar="NAME")

    ls = commands.add_parser("ls", help="list sandboxes")
    ls.add_argument("--json", action="store_true", help="print the JSON list")
    ls.add_argument(
        "-l", "--label", dest="labels", type=_label, action="append", default=[],
        metavar="KEY=VALUE", help="only sandboxes with this label (repeatable)",
    )

    rm = commands.add_parser("rm", help="destroy sandboxes")
    rm.add_argument("ids", nargs="*", metavar="ID")
    rm.add_argument("--all", action="store_true", help="destroy every sandbox")

    execute = commands.add_parser(
        "exec", help="run a command, stream its output, exit with its code"
    )
    execute.add_argument("--cwd", help="working directory (default /root)")
    execute.add_argument(
        "-e", "--env", type=_label, action="append", default=[], metavar="KEY=VALUE",
        help="environment variable (repeatable)",
    )
    execute.add_argument("--timeout", type=float, help="kill it after SECONDS")
    execute.add_argument(
        "-i", "--stdin", action="store_true",
        help="stream our stdin to the command (binary-safe), then close it",
    )
    execute.add_argument("id", metavar="ID")
    execute.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="CMD",
        help='one string runs under /bin/sh -c ("ls -la | wc -l"); several are an argv',
    )

    attach = commands.add_parser(
        "attach", help="an interactive shell in a sandbox (exit with the shell's status)"
    )
    attach.add_argument("id", metavar="ID")
    attach.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="CMD",
        help="what to run instead of bash (one string runs under /bin/sh -c)",
    )

    fs = commands.add_parser("fs", help="files in a sandbox")
    fs_commands = fs.add_subparsers(dest="fs_command", metavar="COMMAND", required=True)
    read = fs_commands.add_parser("read", help="print a file to stdout")
    read.add_argument("id", metavar="ID")
    read.add_argument("path", metavar="PATH")
    write = fs_commands.add_parser("write", help="write stdin to a file")
    write.add_argument("id", metavar="ID")
    write.add_argument("path", metavar="PATH")
    write.add_argument("--mode", type=_octal, help="permission bits of a new file, e.g. 755")
    write.add_argument("--append", action="store_true", help="append instead of replace")
    upload = fs_commands.add_parser(
        "upload", help="extract a tar read from stdin under a directory"
    )
    upload.add_argument("id", metavar="ID")
    upload.add_argument("path", metavar="PATH")
    download = fs_commands.add_parser(
        "download", help="write a tar of a file or directory to stdout"
    )
    download.add_argument("id", metavar="ID")
    download.add_argument("path", metavar="PATH")
    fs_ls = fs_commands.add_parser("ls", help="list a directory")
    fs_ls.add_argument("id", metavar="ID")
    fs_ls.add_argument("path", metavar="PATH", nargs="?", default="/root")
    fs_ls.add_argument("--json", action="store_true", help="print the JSON entries")
    fs_ls.add_argument(
        "--depth", type=int, default=1, metavar="N",
        help="also list subdirectories, N levels deep (default 1)",
    )

    fingerprint = commands.add_parser(
        "fingerprint", help="the fingerprint of the sandbox agent's key (to pin it)")
    fingerprint.add_argument("id", metavar="ID")

    stats = commands.add_parser("stats", help="CPU, memory, network and PID stats")
    stats.add_argument("id", metavar="ID")
    stats.add_argument("--json", action="store_true", help="print the JSON object")

    port = commands.add_parser("port", help="port tunnels into a sandbox (docs/tunnels.md)")
    port_commands = port.add_subparsers(dest="port_command", metavar="COMMAND", required=True)
    url = port_commands.add_parser("url", help="the path-proxy URL of a port")
    expose = port_commands.add_parser(
        "expose", help="open a dedicated host port once the port accepts connections")
    port_ls = port_commands.add_parser("ls", help="list the dedicated host ports")
    close = port_commands.add_parser("close", help="close a dedicated host port")
    for sub in (url, expose, port_ls, close):
        sub.add_argument("id", metavar="ID")
    for sub in (url, expose, close):
        sub.add_argument("port", metavar="PORT", type=_port)
    url.add_argument(
        "--expires", type=int, metavar="S",
        help="a URL signed for S seconds (for a daemon with [tunnels] auth = \"token\")")
    expose.add_argument(
        "--timeout", type=float, metavar="S",
        help="seconds to wait for the port (default: the daemon's tunnels.expose_timeout)")
    for sub in (expose, port_ls):
        sub.add_argument("--json", action="store_true", help="print the JSON")

    health = commands.add_parser("health", help="daemon health and pool status")
    health.add_argument("--json", action="store_true", help="print the JSON object")
    commands.add_parser("version", help="client and server version")
    profiles = commands.add_parser("profiles", help="list pool profiles")
    profiles.add_argument("--json", action="store_true", help="print the JSON list")

    events = commands.add_parser("events", help="the daemon's events (history, or --follow)")
    events.add_argument("-f", "--follow", action="store_true",
                        help="keep printing new events as they happen")
    events.add_argument("--after", type=int, metavar="ID",
                        help="start after this event id (default: the oldest kept;"
                        " with --follow: only new events)")
    events.add_argument("--limit", type=int, default=100, metavar="N",
                        help="without --follow: at most N events (default 100)")
    events.add_argument("--sandbox", metavar="ID", help="only this sandbox's events")
    events.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                        help="only this type, or prefix like 'sandbox.' (repeatable)")
    events.add_argument("--json", action="store_true", help="print one JSON object a line")

    ui = commands.add_parser(
        "ui", help="the web dashboard: a loopback port forwarding to the Unix socket (docs/ui.md)")
    ui.add_argument("--port", type=int, default=0, metavar="N",
                    help="listen on 127.0.0.1:N (default: a free port)")
    ui.add_argument("--read-only", action="store_true",
                    help="forward GET requests only, and the page shows no actions or terminal")

    tpl = commands.add_parser("tpl", help="templates: save, list, remove (docs/templates.md)")
    tpl_commands = tpl.add_subparsers(dest="tpl_command", metavar="COMMAND", required=True)
    save = tpl_commands.add_parser("save", help="save a sandbox's /root as a template")
    save.add_argument("sandbox_id", metavar="ID")
    save.add_argument("--label", required=True, help="the template's label (unique)")
    tpl_ls = tpl_commands.add_parser("ls", help="list templates")
    tpl_ls.add_argument("--json", action="store_true", help="print the JSON list")
    tpl_rm = tpl_commands.add_parser("rm", help="delete templates")
    tpl_rm.add_argument("template_ids", nargs="+", metavar="ID")
    build = commands.add_parser("build", help="build a template from a Dockerfile")
    build.add_argument("-f", "--file", default=None, metavar="DOCKERFILE",
                       help="the Dockerfile (default: CONTEXT/Dockerfile)")
    build.add_argument("--label", required=True, help="the template's label (unique)")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    build.add_argument("context", nargs="?", default=".", metavar="CONTEXT",
                       help="the build context directory (default: .)")

    pool = commands.add_parser("pool", help="warm pool administration (Unix socket only)")
    pool_commands = pool.add_subparsers(dest="pool_command", metavar="COMMAND", required=True)
    status = pool_commands.add_parser("status", help="counts and hit rates per profile")
    status.add_argument("--json", action="store_true", help="print the JSON object")
    resize = pool_commands.add_parser("resize", help="pin a profile's warm count")
    resize.add_argument("profile", metavar="PROFILE")
    resize.add_argument(
        "count", metavar="N", help="warm sandboxes to keep, or 'auto' to unpin"
    )
    flush = pool_commands.add_parser("flush", help="replace every warm sandbox of a profile")
    flush.add_argument("profile", metavar="PROFILE")
    return parser


def main(argv=None):
    """
    The ``sbx`` console script: exit 0 on success, 1 on an error (one line on
    stderr), 2 on a usage error; ``exec`` exits with the command's status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "exec" and not args.cmd:
        parser.error("exec: the following arguments are required: CMD")
    from sbx.commands import run

    sys.exit(run(args))


if __name__ == "__main__":
    main()
