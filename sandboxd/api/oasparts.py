"""
The pieces the OpenAPI document (L{sandboxd.api.openapi}) is written with:
schema references, responses, operations, the common parameters.
"""

_JSON = "application/json"


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description, *codes):
    """A response whose body is the error shape (``codes``: its names)."""
    text = description + (f" (codes: {', '.join(codes)})" if codes else "")
    return {"description": text, "content": {_JSON: {"schema": _ref("Error")}}}


def _ok(description, schema=None, content_type=_JSON):
    response = {"description": description}
    if schema is not None:
        response["content"] = {content_type: {"schema": schema}}
    return response


_SANDBOX_ID = {"name": "sandbox_id", "in": "path", "required": True,
               "schema": {"type": "string", "maxLength": 256}}
_PROFILE = {"name": "profile", "in": "path", "required": True,
            "schema": {"type": "string", "maxLength": 256}}
_INVALID = _error("The request is malformed", "INVALID_BODY", "INVALID_FIELD",
                  "LIMIT_EXCEEDED", "BAD_PATH", "BODY_TOO_LARGE", "NETWORK_UNSUPPORTED")
_NOT_SANDBOX = _error("No sandbox has this id", "SANDBOX_NOT_FOUND")
_ADMIN = _error("Pool administration is served on the Unix socket only", "ADMIN_ONLY")
_NO_PROFILE = _error("No profile has this name", "UNKNOWN_PROFILE")
_NO_TEMPLATE = _error("No template has this id", "TEMPLATE_NOT_FOUND")
_TEMPLATE_ID = {"name": "template_id", "in": "path", "required": True,
                "schema": {"type": "string", "maxLength": 256}}
_PORT = {"name": "port", "in": "path", "required": True,
         "schema": {"type": "integer", "minimum": 1, "maximum": 65535}}
_PORT_RESERVED = _error("The agent's port is never reachable through a tunnel", "PORT_RESERVED")
_COMMON = {"400": _error("The path is not UTF-8", "BAD_PATH"),
           "405": _error("The route exists, not with this method", "METHOD_NOT_ALLOWED"),
           "500": _error("A bug; the daemon logs the traceback", "INTERNAL")}


def _operation(operation_id, summary, responses, parameters=(), body=None, tags=()):
    operation = {"operationId": operation_id, "summary": summary,
                 "responses": {**_COMMON, **responses}}
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = {"required": False,
                                    "content": {_JSON: {"schema": body}}}
    if tags:
        operation["tags"] = list(tags)
    return operation


def _query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_SIZE = {"oneOf": [{"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[kmgtKMGT]?$"},
                   {"type": "integer", "minimum": 0}]}
_COUNT = {"type": "string", "pattern": "^[0-9]+$"}
