"""
Named API errors and their JSON shape.
"""

import json


class ApiError(Exception):
    """
    An error the API answers with ``{"error": {"code", "message"}}``.
    """

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self):
        return error_body(self.code, self.message)


def error_body(code, message):
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def sandbox_paused(sandbox_id):
    """
    The answer to a call on a paused sandbox (409 ``SANDBOX_PAUSED``).
    """
    return ApiError(409, "SANDBOX_PAUSED", f"sandbox {sandbox_id} is paused: resume it first")


def invalid_field(name, reason):
    return ApiError(400, "INVALID_FIELD", f"{name}: {reason}")


def limit_exceeded(name, value, limit, limit_name):
    return ApiError(
        400,
        "LIMIT_EXCEEDED",
        f"{name} {value} exceeds {limit_name} ({limit})",
    )
