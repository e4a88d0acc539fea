"""
The SDK's end of end-to-end encrypted sessions (docs/security.md): the
handshake, opening what the daemon relays, and the errors that end a
session.  The sealing itself is agent.e2e and agent.e2e_frames, shared with
the agent; ``cryptography`` is imported only when a session is encrypted.
"""

import importlib

from agent import wire
from agent.e2e_codes import CODES, E2EError
from sandbox.errors import error_from


def _modules():
    # Imported on first use, on purpose: only encrypted sessions need
    # cryptography.
    try:
        return importlib.import_module("agent.e2e"), importlib.import_module("agent.e2e_frames")
    except ImportError as e:
        raise error_from(
            "E2E_UNSUPPORTED",
            f"encrypted sessions need the cryptography package "
            f"(pip install 'sandboxd-sdk[encryption]'): {e}",
        ) from None


async def handshake(session, pin=None):
    """
    ``e2e.hello`` on ``session`` (a clear call): the agreed Sealing, or the
    typed error (IdentityMismatchError, EncryptionError).
    """
    e2e, e2e_frames = _modules()
    try:
        hello = e2e.ClientHandshake(session.sandbox_id, pin)
        channel = hello.finish(await session.call("e2e.hello", hello.hello()))
    except E2EError as e:
        raise failure(session.sandbox_id, e) from None
    return e2e_frames.Sealing(channel, client=True)


def failure(sandbox_id, error):
    """
    The typed SDK error of an E2EError (or a wire ProtocolError in a sealed
    payload).
    """
    code = getattr(error, "code", None)
    if code not in CODES:
        code = "E2E_MALFORMED"
    return error_from(code, f"sandbox {sandbox_id}: {error.message}")


def open(sealing, frame):
    """
    A frame the daemon relayed -> the plaintext frame, or None to ignore.
    E2EError when it ends the session: a clear ERROR with an E2E code (the
    agent ended it), or a frame that fails to open.
    """
    if frame.type is wire.FrameType.ERROR and frame.stream and not frame.flags & wire.SEALED:
        try:
            body = frame.json()
        except wire.ProtocolError:
            body = {}
        if body.get("code") in CODES:
            raise E2EError(
                body["code"], f"the agent ended the encrypted session: {body.get('message')}"
            )
    return sealing.open(frame)


def close_request(sealing, stream_id):
    """
    The clear ``e2e.close`` that tells the agent to forget the session's keys
    (its answer is not awaited: the daemon relays in order).
    """
    return wire.request(stream_id, "e2e.close", {"session": sealing.channel.session_id.hex()})
