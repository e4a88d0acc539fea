"""
The volumes of every identity: made, listed, found for a create's mounts,
deleted, each recorded in the state store (L{sandboxd.store.VolumeRecord}).

Volumes are scoped like sandboxes (sandboxd/api/identity.py): a caller uses
and deletes only its own identity's volumes, by name; another identity's
volume of the same name is another volume, and a caller that names one it
does not own hears ``VOLUME_NOT_FOUND``.  The operator (no identity) lists
every volume.  A volume some live sandbox mounts cannot be deleted
(``VOLUME_IN_USE``).
"""

import os

from twisted.logger import Logger

from sandboxd.api.errors import ApiError, invalid_field
from sandboxd.api.identity import may_see
from sandboxd.configvalues import parse_size
from sandboxd.sandbox import iso_time
from sandboxd.store import VolumeRecord
from sandboxd.volumes import disks
from sandboxd.volumes.mounts import check_name

#: The smallest volume: room for ext4's own structures and some data.
MIN_SIZE = 8 << 20


def _not_found(name):
    return ApiError(404, "VOLUME_NOT_FOUND", f"volume {name} not found")


class Volumes:
    """
    Volumes under ``root`` (``data_dir/volumes``), recorded in ``store``,
    within ``limits`` (``max_volume_size``, ``max_volumes``);
    ``sandboxes()`` lists the live sandboxes (to tell which mount what).
    """

    log = Logger()

    def __init__(self, reactor, store, root, limits, sandboxes):
        self._reactor = reactor
        self._store = store
        self._root = root
        self.limits = limits
        self._sandboxes = sandboxes
        self._busy = set()

    def _find(self, identity, name):
        for record in self._store.volumes():
            if (record.identity, record.name) == (identity, name):
                return record
        return None

    def usedBy(self, identity, name):
        """
        The ids of the live sandboxes mounting this volume.
        """
        return [s.id for s in self._sandboxes() if s.alive and s.identity == identity
                and any(v["name"] == name for v in s.volumes)]

    def describe(self, record):
        """
        The public shape of a volume (docs/lifecycle.md).
        """
        return {"name": record.name, "size": record.size, "created": iso_time(record.created),
                "identity": record.identity,
                "used_by": self.usedBy(record.identity, record.name)}

    def list(self, caller):
        """
        The volumes ``caller`` may see, oldest first.
        """
        return [self.describe(r) for r in self._store.volumes() if may_see(caller, r.identity)]

    async def create(self, identity, body, quota=None):
        """
        Make the volume a ``POST /volumes`` body asks for; its record.
        """
        unknown = sorted(set(body) - {"name", "size"})
        if unknown:
            raise invalid_field(unknown[0], "unknown field")
        name = check_name(body.get("name"))
        size = self._size(body.get("size"))
        key = (identity, name)
        if self._find(identity, name) is not None or key in self._busy:
            raise ApiError(409, "VOLUME_EXISTS", f"volume {name} exists")
        held = sum(1 for r in self._store.volumes() if r.identity == identity)
        if held >= self.limits.max_volumes:
            raise ApiError(429, "VOLUME_LIMIT",
                           f"{held} volumes held (limits.max_volumes = {self.limits.max_volumes})",
                           headers={"Retry-After": "60"})
        self._busy.add(key)
        try:
            await disks.make(self._reactor, self._path(identity, name), size, name)
        except (disks.DiskError, OSError) as e:
            self.log.error("volume {name} could not be made: {error}", name=name, error=e)
            raise ApiError(502, "VOLUME_FAILED", f"volume {name} could not be made: {e}")
        finally:
            self._busy.discard(key)
        record = VolumeRecord(identity, name, size, self._reactor.seconds())
        self._store.putVolume(record)
        self._store.addEvent("volume.created", None, record.created,
                             {"name": name, "size": size}, identity)
        return record

    def _size(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise invalid_field("size", "required: a size like '1g' or a number of bytes")
        try:
            size = parse_size(str(value))
        except ValueError as e:
            raise invalid_field("size", str(e))
        if size < MIN_SIZE:
            raise invalid_field("size", f"at least {MIN_SIZE >> 20}m")
        if size > self.limits.max_volume_size:
            raise ApiError(400, "LIMIT_EXCEEDED", f"size {value} exceeds limits.max_volume_size"
                           f" ({self.limits.max_volume_size})")
        return size

    async def delete(self, identity, name):
        """
        Delete the caller's volume ``name`` and its data.
        """
        record = self._find(identity, name)
        if record is None or (identity, name) in self._busy:
            raise _not_found(name)
        users = self.usedBy(identity, name)
        if users:
            raise ApiError(409, "VOLUME_IN_USE",
                           f"volume {name} is mounted in {', '.join(users)}")
        self._store.deleteVolume(identity, name)
        try:
            await disks.remove(self._reactor, self._path(identity, name))
        except disks.DiskError as e:
            self.log.error("volume {name} could not be removed: {error}", name=name, error=e)
            raise ApiError(502, "VOLUME_FAILED", f"volume {name} could not be removed: {e}")
        self._store.addEvent("volume.deleted", None, self._reactor.seconds(),
                             {"name": name}, identity)

    async def sources(self, identity, mounts):
        """
        ``mounts`` (of a create body) with the host ``source`` of each
        volume, mounted on the host if it was not (after a reboot).
        """
        found = []
        for mount in mounts:
            if self._find(identity, mount["name"]) is None:
                raise _not_found(mount["name"])
            path = self._path(identity, mount["name"])
            try:
                await disks.ensure_mounted(self._reactor, path)
            except disks.DiskError as e:
                raise ApiError(502, "VOLUME_FAILED", f"volume {mount['name']}: {e}")
            found.append(dict(mount, source=disks.mount_point(path)))
        return tuple(found)

    def _path(self, identity, name):
        return disks.directory(self._root, identity, name)


def volumes_for(reactor, store, config, manager):
    """
    The daemon's Volumes, under ``data_dir/volumes``.
    """
    root = os.path.join(config.server.data_dir, "volumes")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return Volumes(reactor, store, root, config.limits, manager.list)
