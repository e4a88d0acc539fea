"""
The OpenAPI entries of sandboxes that live like machines (docs/lifecycle.md):
pausing and resuming, volumes, and the create fields they add.
"""

from sandboxd.api.oasparts import (
    _INVALID, _NOT_SANDBOX, _SANDBOX_ID, _SIZE, _error, _ok, _operation, _ref,
)

_VOLUME_NAME = {"name": "name", "in": "path", "required": True,
                "schema": {"type": "string", "maxLength": 256}}
_NO_VOLUMES = _error("This daemon serves no volumes", "NOT_AVAILABLE")

#: Fields of the create body (CreateRequest's properties).
CREATE_FIELDS = {
    "ttl_action": {"enum": ["destroy", "pause"]},
    "expires_at": {"type": "string", "description": "ISO 8601 time with a zone"},
    "volumes": {"type": "array", "maxItems": 8, "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "path"],
        "properties": {"name": {"type": "string"}, "path": {"type": "string"},
                       "read_only": {"type": "boolean"}}}},
}

SCHEMAS = {
    "VolumeRequest": {
        "type": "object", "additionalProperties": False, "required": ["name", "size"],
        "properties": {"name": {"type": "string"}, "size": _SIZE},
    },
    "Volume": {
        "type": "object", "required": ["name", "size", "created", "used_by"],
        "properties": {
            "name": {"type": "string"}, "size": {"type": "integer"},
            "created": {"type": "string"}, "identity": {"type": "string"},
            "used_by": {"type": "array", "items": {"type": "string"}},
        },
    },
}


def _freeze(operation_id, summary):
    return {"post": _operation(operation_id, summary, {
        "200": _ok("The sandbox", _ref("Sandbox")), "404": _NOT_SANDBOX,
        "409": _error("The sandbox has failed or is ending", "SANDBOX_NOT_RUNNING"),
        "501": _error("Its runtime cannot pause", "PAUSE_NOT_SUPPORTED"),
        "502": _error("The container engine failed", "RUNTIME_ERROR"),
    }, [_SANDBOX_ID], tags=["sandboxes"])}


PATHS = {
    "/sandboxes/{sandbox_id}/pause": _freeze(
        "pauseSandbox", "Freeze a sandbox, keeping its memory and processes"),
    "/sandboxes/{sandbox_id}/resume": _freeze("resumeSandbox", "Thaw a paused sandbox"),
    "/volumes": {
        "post": _operation("createVolume", "Create an empty, size-capped volume", {
            "201": _ok("The volume", _ref("Volume")), "400": _INVALID,
            "409": _error("The caller has a volume of this name", "VOLUME_EXISTS"),
            "429": _error("limits.max_volumes is reached", "VOLUME_LIMIT"),
            "501": _NO_VOLUMES,
            "502": _error("The host could not make it", "VOLUME_FAILED"),
        }, body=_ref("VolumeRequest"), tags=["volumes"]),
        "get": _operation("listVolumes", "The caller's volumes, oldest first", {
            "200": _ok("The volumes", {"type": "array", "items": _ref("Volume")}),
            "501": _NO_VOLUMES,
        }, tags=["volumes"]),
    },
    "/volumes/{name}": {
        "delete": _operation("deleteVolume", "Delete a volume and its data", {
            "204": _ok("Deleted"),
            "404": _error("The caller has no volume of this name", "VOLUME_NOT_FOUND"),
            "409": _error("A sandbox mounts it", "VOLUME_IN_USE"),
            "501": _NO_VOLUMES,
            "502": _error("The host could not remove it", "VOLUME_FAILED"),
        }, [_VOLUME_NAME], tags=["volumes"]),
    },
}
