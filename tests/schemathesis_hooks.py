"""
schemathesis hooks for tests/test_e2e_schemathesis.py (loaded through
SCHEMATHESIS_HOOKS): every error answer must have the API's error shape,
and a 5xx must be one the document names for that operation (a gateway's
502/503/504 with its code), never a 500.
"""

import json

import schemathesis


@schemathesis.check
def documented_server_error(ctx, response, case):
    """
    A 5xx is never 500, and otherwise one the operation documents, with a
    code its description names: the path proxy's 502 PORT_NOT_LISTENING is
    the daemon answering as a gateway should, a 500 is a bug.
    """
    status = response.status_code
    if status < 500:
        return None
    documented = case.operation.definition.raw.get("responses", {}).get(str(status))
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if status == 500 or documented is None or not code or code not in documented.get(
            "description", ""):
        raise AssertionError(
            f"{case.method} {case.formatted_path} answered {status} {code or ''}: not a"
            f" documented server error: {response.content[:200]!r}")
    return None


@schemathesis.check
def error_shape(ctx, response, case):
    """
    A 4xx or 5xx answer (other than a WebSocket handshake's) is JSON
    ``{"error": {"code": str, "message": str}}``.
    """
    if response.status_code < 400 or case.path.endswith("/ws") and response.status_code in (
            410, 426):
        return None
    try:
        body = json.loads(response.content)
        error = body["error"]
        ok = isinstance(error["code"], str) and isinstance(error["message"], str)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise AssertionError(
            f"{case.method} {case.formatted_path} answered {response.status_code} without"
            f" the error shape: {response.content[:200]!r}")
    return None


@schemathesis.hook
def map_body(ctx, body):
    """
    A create body's allow list keeps only address entries: a host name
    would make the daemon resolve it, a DNS query leaving this machine.
    An expose waits at most 2 s for its port (the 504 stays in reach).
    """
    if isinstance(body, dict) and set(body) == {"timeout"} and isinstance(
            body["timeout"], (int, float)) and body["timeout"] > 2:
        # An expose's wait for its port: the run's client gives up after 30 s.
        body["timeout"] = 2
    network = body.get("network") if isinstance(body, dict) else None
    if isinstance(network, dict) and isinstance(network.get("allow"), list):
        network["allow"] = [entry for entry in network["allow"]
                            if not isinstance(entry, str) or not any(c.isalpha() for c in entry)]
    return body


def _tar(files):
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _build_contexts():
    """
    Build contexts for POST /templates/build that the engine refuses at
    once (no image is built, nothing is pulled): not a tar, an empty tar,
    a Dockerfile the engine cannot parse.
    """
    from hypothesis import strategies as st

    return st.sampled_from([
        b"not a tar",
        _tar({}),
        _tar({"Dockerfile": b"NOT-AN-INSTRUCTION here\n"}),
    ])


schemathesis.openapi.media_type("application/x-tar", _build_contexts())
