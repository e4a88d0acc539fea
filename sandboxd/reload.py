"""
Hot reload of the configuration file, on SIGHUP and when the file changes
(docs/config.md, "What reloads live").

``ConfigReloader.reload`` reads the file again; a file with any error is
refused (the log and a ``config.rejected`` event name the key) and the
running configuration stays.  Otherwise everything but the sections in
``RESTART_SECTIONS`` (listeners, data directory, network, firecracker) is
applied through ``apply`` (the manager's and the API's ``reload``), and a
``config.reloaded`` event lists the keys that changed.

``ReloadService`` installs the SIGHUP handler and polls the file's
``stat`` on the reactor's clock (an edit is applied once the file has
stayed the same for one poll, so a half-written file is not read).  With
no file, it reloads once at start: the built-in defaults then add a profile
for each sandbox image present (sandboxd/defaults.py).
"""

import inspect
import os
import signal

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sandboxd.config import Config, ConfigError, load_config

#: Seconds between two looks at the file.
POLL_INTERVAL = 1.0
#: Sections a running daemon keeps until it restarts (listeners, state,
#: network): a reload that changes them applies everything else.
RESTART_SECTIONS = ("server", "network", "firecracker")


def changed_keys(old, new):
    """
    The dotted keys whose values differ between two Configs, a changed,
    added or removed profile as ``pool.base.NAME``.
    """
    keys = []
    for section in attrs.fields(Config):
        if section.name == "profiles":
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        keys.extend(f"{section.name}.{field.name}" for field in attrs.fields(type(before))
                    if getattr(before, field.name) != getattr(after, field.name))
    keys.extend(f"pool.base.{name}" for name in sorted(old.profiles.keys() | new.profiles.keys())
                if old.profiles.get(name) != new.profiles.get(name))
    return keys


def applier(manager, api):
    """
    The ``apply`` of a daemon: the manager first (it may refuse a runtime
    it cannot prepare), then the API.
    """

    async def apply(config):
        pools = await manager.reload(config)
        api.reload(config)
        return pools

    return apply


class ConfigReloader:
    """
    Reloads ``path`` (None: the built-in defaults) over ``current``.
    """

    log = Logger()

    def __init__(self, path, current, apply, feed, environ=os.environ, load=load_config):
        self.path = path
        self.config = current
        self._apply = apply
        self._feed = feed
        self._environ = environ
        self._load = load
        self._running = None
        self._again = False

    def reload(self, why):
        """
        Reload now (or, if a reload is under way, once more after it).
        Return a Deferred that fires when this reload is done.
        """
        if self._running is not None:
            self._again = True
            return self._running
        self._running = Deferred.fromCoroutine(self._reload(why))
        self._running.addErrback(lambda f: self.log.failure("reloading failed", f))

        def done(result):
            self._running = None
            if self._again:
                self._again = False
                return self.reload(why)
            return result

        return self._running.addBoth(done)

    async def _reload(self, why):
        try:
            new = self._load(self.path, self._environ)
            if inspect.isawaitable(new):
                new = await new
        except ConfigError as e:
            return self._reject(e.key or "", str(e), why)
        except Exception as e:
            return self._reject("", f"{self.path or '<defaults>'}: cannot read: {e}", why)
        changed = changed_keys(self.config, new)
        waiting = [key for key in changed if key.partition(".")[0] in RESTART_SECTIONS]
        live = attrs.evolve(new, **{name: getattr(self.config, name)
                                    for name in RESTART_SECTIONS})
        try:
            pools = await self._apply(live)
        except Exception as e:
            key = next((k for k in changed if k.startswith("pool.base.")), "pool.base")
            return self._reject(key, f"{self.path}: {key}: cannot apply: {e}", why)
        self.config = live
        self.log.info("configuration reloaded ({why}): {changed}", why=why,
                      changed=", ".join(changed) or "no change")
        if waiting:
            self.log.warn("these settings apply only after a restart: {keys}",
                          keys=", ".join(waiting))
        self._feed.record("config.reloaded", data={
            "source": str(self.path or "<defaults>"), "trigger": why, "changed": changed,
            "restart_required": waiting, "profiles": pools or {},
        })
        return True

    def _reject(self, key, message, why):
        self.log.error("configuration refused ({why}), the old one stays: {message}",
                       why=why, message=message)
        self._feed.record("config.rejected", data={
            "source": str(self.path or "<defaults>"), "trigger": why, "key": key,
            "message": message,
        })
        return False


class ReloadService(Service):
    """
    SIGHUP and the file watch, for the life of the daemon.
    """

    log = Logger()

    def __init__(self, reloader, clock, interval=POLL_INTERVAL, signals=signal,
                 reload_when=None):
        self._reloader = reloader
        #: A Deferred (the manager's start) after which to reload once, or None.
        self._reload_when = reload_when
        self._clock = clock
        self._interval = interval
        self._signals = signals
        self._previous = None
        self._seen = self._last = None
        self._watch = None

    def startService(self):
        super().startService()
        self._previous = self._signals.signal(signal.SIGHUP, self._hangup)
        if self._reload_when is not None:

            def reload(result):
                self._reloader.reload("start")
                return result

            self._reload_when.addCallback(reload)
        if self._reloader.path is not None:
            self._seen = self._last = self._signature()
            self._watch = LoopingCall(self.poll)
            self._watch.clock = self._clock
            self._watch.start(self._interval, now=False).addErrback(
                lambda f: self.log.failure("watching the configuration stopped", f))

    def stopService(self):
        super().stopService()
        if self._previous is not None:
            self._signals.signal(signal.SIGHUP, self._previous)
            self._previous = None
        if self._watch is not None and self._watch.running:
            self._watch.stop()

    def _hangup(self, signum, frame):
        self._clock.callFromThread(self._reloader.reload, "SIGHUP")

    def _signature(self):
        try:
            st = os.stat(self._reloader.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def poll(self):
        """
        Reload when the file changed since the last reload and has stayed
        the same since the last poll; a missing file is waited for.
        """
        now = self._signature()
        steady, self._last = now == self._last, now
        if now is not None and steady and now != self._seen:
            self._seen = now
            self._reloader.reload("file changed")
