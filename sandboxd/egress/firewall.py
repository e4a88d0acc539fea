"""
Per-sandbox egress rules in the host's iptables.

A sandbox's packets to anywhere but the host cross the host's FORWARD
chain, whose first rule jumps to Docker's C{DOCKER-USER} (kept by dockerd
for its users).  sandboxd puts one jump there, to its chain
C{SANDBOXD-EGRESS}; that chain holds, for every sandbox with a policy, one
jump keyed by the sandbox's bridge address (C{-s IP/32}) to the sandbox's own
chain C{SBXE-<daemon hash>-<sandbox hash>-<generation>}, which RETURNs what the policy allows (to
Docker's rules, which still apply) and REJECTs the rest (a TCP reset, an
ICMP port-unreachable: the sandbox learns at once, no timeouts).

Replacing a sandbox's rules is fail-closed: the new chain is built
complete, its jump inserted above the old one, then the old jump and chain
are deleted.  Removal deletes the jump and the chain.  L{EgressFirewall.sweep}
removes the rules of every sandbox not in a given set (after a restart).
A sandbox without a policy (``open``) has no rules at all.  A sandbox with
secrets may also reach the daemon's egress proxy: one ACCEPT rule in the
host firewall's C{SANDBOXD-INPUT}, tagged with the sandbox's chain stem.
Every name carries a hash of the daemon's data directory: daemons sharing
the bridge (tests, several daemons on one host) keep to their own rules.
"""

import hashlib
import os
import shlex

from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger

from sandboxd.runtimes._firewall import CHAIN as INPUT_CHAIN
from sandboxd.runtimes._firewall import FirewallError

CHAIN = "SANDBOXD-EGRESS"
#: Docker's chain for its users' rules, jumped to from the top of FORWARD.
DOCKER_USER = "DOCKER-USER"
PREFIX = "SBXE-"
_REJECT = [
    ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
    ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
]


def _hash(text, length):
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def owner_prefix(owner):
    """
    The start of every chain name of one daemon (C{owner}: its data
    directory): daemons sharing a bridge never touch each other's rules.
    """
    return f"{PREFIX}{_hash(owner, 6)}-"


def chain_stem(sandbox_id, owner=""):
    """
    The start of every chain name of C{sandbox_id} (hashes: chain names
    take at most 28 characters).
    """
    return owner_prefix(owner) + _hash(owner + "\0" + sandbox_id, 8)


def chain_rules(allowed, nameservers=()):
    """
    The rules of a sandbox's chain: C{allowed} is [(cidr, port or None)]
    (an empty list: nothing is allowed), C{nameservers} the resolvers the
    sandbox's DNS queries go to, when it needs DNS.
    """
    rules = []
    if allowed or nameservers:
        rules.append(["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"])
    for cidr, port in allowed:
        if port is None:
            rules.append(["-d", cidr, "-j", "RETURN"])
        else:
            for proto in ("tcp", "udp"):
                rules.append(["-d", cidr, "-p", proto, "--dport", str(port), "-j", "RETURN"])
    for server in nameservers:
        for proto in ("udp", "tcp"):
            rules.append(["-d", f"{server}/32", "-p", proto, "--dport", "53", "-j", "RETURN"])
    return rules + _REJECT


class EgressFirewall:
    """
    Installs, replaces and removes sandboxes' egress chains.  C{run(args)}
    runs iptables with C{args} and fires with (stdout, stderr, exit code);
    by default the real C{iptables}, off the reactor's thread.
    """

    log = Logger()

    def __init__(self, reactor, owner="", run=None, binary="iptables"):
        self._reactor = reactor
        self._owner = owner
        self._binary = binary
        self._run = run or self._spawn
        self._ready = False

    def _spawn(self, args):
        return getProcessOutputAndValue(
            self._binary, ["-w", *args], env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"},
            reactor=self._reactor,
        )

    async def _iptables(self, args, check=True):
        try:
            out, err, code = await self._run(args)
        except OSError as e:
            raise FirewallError(f"cannot run {self._binary}: {e}") from e
        if check and code != 0:
            message = err.decode(errors="replace").strip() or f"exit {code}"
            raise FirewallError(f"{self._binary} {' '.join(args)}: {message}")
        return code, out.decode(errors="replace")

    async def _new_chain(self, name):
        code, _ = await self._iptables(["-N", name], check=False)
        if code != 0:
            # It exists (a restart, a failed earlier try): start it afresh.
            await self._iptables(["-F", name])

    async def prepare(self):
        """
        Make C{SANDBOXD-EGRESS} and its jump from C{DOCKER-USER} (idempotent).
        """
        code, _ = await self._iptables(["-N", CHAIN], check=False)
        jump = [DOCKER_USER, "-j", CHAIN]
        code, _ = await self._iptables(["-C", *jump], check=False)
        if code != 0:
            await self._iptables(["-I", DOCKER_USER, "1", "-j", CHAIN])
        self._ready = True

    async def _jumps(self):
        """
        [(source address, chain, the rule's arguments)] of C{SANDBOXD-EGRESS}.
        """
        _, out = await self._iptables(["-S", CHAIN])
        jumps = []
        for line in out.splitlines():
            words = shlex.split(line)
            if words[:2] != ["-A", CHAIN] or "-j" not in words:
                continue
            target = words[words.index("-j") + 1]
            source = words[words.index("-s") + 1] if "-s" in words else None
            jumps.append((source, target, words[2:]))
        return jumps

    async def apply(self, sandbox_id, address, rules):
        """
        Send every packet of the sandbox at C{address} through C{rules}
        (L{chain_rules}), replacing its earlier rules if any.
        """
        if not self._ready:
            await self.prepare()
        stem = chain_stem(sandbox_id, self._owner)
        name = f"{stem}-{os.urandom(2).hex()}"
        await self._new_chain(name)
        for rule in rules:
            await self._iptables(["-A", name, *rule])
        await self._iptables(["-I", CHAIN, "1", "-s", f"{address}/32", "-m", "comment",
                              "--comment", sandbox_id[:200], "-j", name])
        await self._drop(lambda target: target.startswith(stem) and target != name)
        await self._drop_stale(address, name)
        self.log.info("egress rules of {sandbox} ({address}) in {chain}",
                      sandbox=sandbox_id, address=address, chain=name)

    async def _drop_stale(self, address, keep):
        """
        Delete every other jump for C{address}, whoever made it, and its
        chain: one live container has an address on the bridge, so a jump
        left by a sandbox that had it before (its daemon killed, its
        container removed behind the daemon's back) is stale, and would
        reject this sandbox's traffic.
        """
        source = f"{address}/32"
        for jump_source, target, words in await self._jumps():
            if jump_source == source and target != keep and target.startswith(PREFIX):
                self.log.info("removing stale egress rules {chain} of {address}",
                              chain=target, address=address)
                await self._iptables(["-D", CHAIN, *words], check=False)
                await self._delete_chain(target)

    async def remove(self, sandbox_id):
        """
        Delete the sandbox's jump and chains (none: nothing to do).
        """
        if not self._ready:
            await self.prepare()
        stem = chain_stem(sandbox_id, self._owner)
        await self._drop(lambda target: target.startswith(stem))
        await self._close_proxy(lambda tag: tag == stem)

    async def open_proxy(self, sandbox_id, address, gateway, port):
        """
        Let the sandbox at C{address} connect to the egress proxy at
        C{gateway}:C{port} (above the host firewall's drop of the bridge).
        """
        rule = ["-s", f"{address}/32", "-d", f"{gateway}/32", "-p", "tcp", "--dport", str(port),
                "-m", "comment", "--comment", chain_stem(sandbox_id, self._owner), "-j", "ACCEPT"]
        code, _ = await self._iptables(["-C", INPUT_CHAIN, *rule], check=False)
        if code != 0:
            await self._iptables(["-I", INPUT_CHAIN, "1", *rule])
        # Another sandbox's earlier rule for this address is stale (as in apply).
        await self._close_proxy(lambda tag: tag != rule[rule.index("--comment") + 1],
                                source=f"{address}/32", anyone=True)

    async def _close_proxy(self, doomed, source=None, anyone=False):
        """
        Delete the proxy rules of C{SANDBOXD-INPUT} whose tag C{doomed(tag)} is
        true of (the chain missing: nothing to do): this daemon's, or
        C{anyone}'s for the address C{source}.
        """
        code, out = await self._iptables(["-S", INPUT_CHAIN], check=False)
        if code != 0:
            return
        for line in out.splitlines():
            words = shlex.split(line)
            if words[:2] != ["-A", INPUT_CHAIN] or "--comment" not in words:
                continue
            tag = words[words.index("--comment") + 1]
            if source is not None and (words[words.index("-s") + 1] if "-s" in words
                                       else None) != source:
                continue
            if (tag.startswith(self._prefix if not anyone else PREFIX)) and doomed(tag):
                await self._iptables(["-D", INPUT_CHAIN, *words[2:]], check=False)

    @property
    def _prefix(self):
        return owner_prefix(self._owner)

    async def sweep(self, keep):
        """
        Delete the rules of every sandbox whose id is not in C{keep}, and
        any chain of ours no jump leads to.
        """
        if not self._ready:
            await self.prepare()
        stems = {chain_stem(sandbox_id, self._owner) for sandbox_id in keep}
        size = len(self._prefix) + 8
        await self._drop(lambda target: target[:size] not in stems)
        await self._close_proxy(lambda tag: tag not in stems)
        _, out = await self._iptables(["-S"])
        for line in out.splitlines():
            words = line.split()
            if words[:1] == ["-N"] and words[1].startswith(self._prefix):
                if words[1][:size] not in stems:
                    await self._delete_chain(words[1])

    async def _drop(self, doomed):
        """
        Delete the jumps to chains C{doomed(name)} is true of, then those chains.
        """
        chains = set()
        for _, target, words in await self._jumps():
            if target.startswith(self._prefix) and doomed(target):
                await self._iptables(["-D", CHAIN, *words], check=False)
                chains.add(target)
        for name in sorted(chains):
            await self._delete_chain(name)

    async def _delete_chain(self, name):
        await self._iptables(["-F", name], check=False)
        await self._iptables(["-X", name], check=False)
