"""
The body of a sandbox's container: what the engine is asked to create, with
every hardening setting (sandboxd/runtimes/docker.py sends it).
"""

# Container runtime (as registered with dockerd) for each runtime name.
OCI_RUNTIMES = {"docker": None, "docker+gvisor": "runsc"}

MANAGED_LABEL = "sandboxd.managed"
PIDS_LIMIT = 256
# Under gVisor's ptrace platform each task of the sandbox costs about eight
# host threads (measured: 240 sleeping tasks, 1960 host pids), beside the
# Sentry's own: a host pids limit of 256 kills the whole sandbox at ~30
# tasks.  There the Sentry enforces PIDS_LIMIT as RLIMIT_NPROC (it applies
# it to root as well), and the host cgroup gets room for that many tasks'
# threads and the Sentry's, still bounded.
GVISOR_HOST_PIDS_LIMIT = 12 * PIDS_LIMIT
# gVisor's Sentry, unlike Linux, lets the sandbox's processes SIGKILL and
# SIGSTOP its PID 1, and the sandbox ends with it.  The agent's PID 1 uses
# these to move to a uid of its own, out of reach of root without CAP_KILL,
# and still signal its server; the server (and so every command) gets root
# back with no capability at all (agent/init.py leave_root).
GVISOR_INIT_CAPABILITIES = ("KILL", "SETGID", "SETUID", "SETPCAP")
TMP_TMPFS = "rw,noexec,nosuid,nodev,size=100m"


def container_config(spec, network, agent_port):
    """
    The body of C{POST /containers/create} for C{spec}'s sandbox on
    C{network}: read-only root, private tmpfs mounts, no capabilities (under
    gVisor, four for the agent's PID 1 alone), no new privileges, bounded
    pids, memory without swap and CPU.
    """
    labels = {
        MANAGED_LABEL: "1",
        "sandboxd.id": spec.sandbox_id,
        "sandboxd.profile": spec.profile,
        "sandboxd.owner": spec.owner,
    }
    labels.update({f"sandboxd.label.{k}": str(v) for k, v in spec.labels.items()})
    host_config = {
        "ReadonlyRootfs": True,
        "Tmpfs": {
            "/tmp": TMP_TMPFS,
            # exec: users run what they build or install under /root.
            "/root": f"rw,exec,nosuid,nodev,size={spec.storage},mode=0700",
        },
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "PidsLimit": PIDS_LIMIT,
        "Memory": spec.memory,
        "MemorySwap": spec.memory,
        "NanoCpus": round(spec.cpu * 1e9),
        "NetworkMode": network,
        "Init": False,
        "AutoRemove": False,
        # What a sandbox prints on its console must not fill the host.
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
    }
    if spec.mounts:
        host_config["Mounts"] = [
            {"Type": "bind", "Source": source, "Target": target, "ReadOnly": read_only,
             "BindOptions": {"Propagation": "rprivate"}}
            for source, target, read_only in spec.mounts
        ]
    oci = OCI_RUNTIMES[spec.runtime]
    if oci is not None:
        host_config["Runtime"] = oci
    if oci == "runsc":
        host_config["CapAdd"] = list(GVISOR_INIT_CAPABILITIES)
        host_config["PidsLimit"] = GVISOR_HOST_PIDS_LIMIT
        host_config["Ulimits"] = [{"Name": "nproc", "Soft": PIDS_LIMIT, "Hard": PIDS_LIMIT}]
    return {
        "Image": spec.image,
        "Hostname": spec.sandbox_id,
        "Env": [
            f"SANDBOX_AGENT_SECRET={spec.secret}",
            f"SANDBOX_AGENT_PORT={agent_port}",
        ],
        "Labels": labels,
        "StopSignal": "SIGKILL",
        # No terminal and no stdin; what the SDK used to send.
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": {network: {}}},
    }
