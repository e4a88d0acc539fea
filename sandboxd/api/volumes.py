"""
The volume routes (docs/lifecycle.md): ``POST /volumes``, ``GET
/volumes``, ``DELETE /volumes/{name}``, each on the caller's own identity's
volumes (L{sandboxd.volumes.registry}).
"""

from sandboxd.api.answers import json_answer
from sandboxd.api.errors import ApiError
from sandboxd.api.identity import caller_identity
from sandboxd.api.requests import read_json_object


def _require(volumes):
    if volumes is None:
        raise ApiError(501, "NOT_AVAILABLE", "this daemon serves no volumes")
    return volumes


def install(app):
    """
    Add the volume routes to the Klein ``app`` of SandboxAPI, whose
    instances hold the Volumes (or None) as ``volumes``.
    """

    @app.route("/volumes", methods=["POST"])
    async def createVolume(self, request):
        volumes = _require(self.volumes)
        record = await volumes.create(caller_identity(request), read_json_object(request))
        return json_answer(request, volumes.describe(record), 201)

    @app.route("/volumes", methods=["GET"])
    def listVolumes(self, request):
        return json_answer(request, _require(self.volumes).list(caller_identity(request)))

    @app.route("/volumes/<name>", methods=["DELETE"])
    async def deleteVolume(self, request, name):
        await _require(self.volumes).delete(caller_identity(request), name)
        request.setResponseCode(204)
        return b""
