"""
Volumes (docs/lifecycle.md): ``client.volumes.create/list/delete``; mount
them with ``create_sandbox(volumes=[...])``.
"""

from urllib.parse import quote


class Volumes:
    """
    The volume routes of one Client.
    """

    def __init__(self, client):
        self._client = client

    async def create(self, name, size):
        """
        ``POST /volumes``: a new empty volume of ``size`` ("1g", "512m" or
        bytes); return its object (``name``, ``size``, ``created``, ...).
        """
        return await self._client.request("POST", "/volumes", {"name": name, "size": size})

    async def list(self):
        """
        ``GET /volumes``: the caller's volumes, oldest first, with the
        sandboxes each is mounted in (``used_by``).
        """
        return await self._client.request("GET", "/volumes")

    async def delete(self, name):
        """
        ``DELETE /volumes/{name}``: remove the volume and its data (a 409
        ``VOLUME_IN_USE`` while a sandbox mounts it).
        """
        await self._client.request("DELETE", f"/volumes/{quote(str(name), safe='')}")
