"""
The agent's side of end-to-end encryption: the ``e2e.*`` requests and the
encrypted sessions of one connection.

This module imports ``cryptography`` (through agent.e2e): agent.server
loads it only when a client asks for encryption (``e2e.hello`` or
``e2e.identity``), so an agent that never serves an encrypted session stays
standard-library only and keeps its small memory.

Many clients' sessions share the daemon's one connection to the agent; each
encrypted session has its own keys (a Sealing) and owns the wire streams
its sealed REQUESTs opened.
"""

import collections
import os

from . import e2e, wire
from .e2e import Code, E2EError
from .e2e_frames import Sealing, session_of

#: Encrypted sessions one connection keeps; beyond it the oldest idle one
#: is dropped (a client that comes back gets E2E_UNKNOWN_SESSION).
MAX_SESSIONS = 64
#: Where the agent writes its key's fingerprint for processes in the
#: sandbox (``cat`` it to pin the key out of band).
FINGERPRINT_PATH = "/tmp/.sandbox-agent-identity"


def identity_of(agent):
    """
    The agent's static key (an e2e.Identity) from the 32 random bytes it
    made at boot; the fingerprint goes to FINGERPRINT_PATH the first time.
    """
    identity = getattr(agent, "identity", None)
    if identity is None:
        identity = agent.identity = e2e.Identity(agent.identity_seed)
        try:
            fd = os.open(FINGERPRINT_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o444)
            with os.fdopen(fd, "w") as f:
                f.write(identity.fingerprint + "\n")
        except OSError:
            pass  # informational only
    return identity


class ConnectionE2E:
    """
    The encrypted sessions on one agent connection.
    """

    def __init__(self, agent, rekey_shift=e2e.REKEY_SHIFT):
        self.agent = agent
        self.sessions = collections.OrderedDict()
        #: wire stream -> the Sealing that opened it
        self.owners = {}
        self._rekey_shift = rekey_shift

    def request(self, method, params):
        """
        A clear ``e2e.*`` request -> its RESULT object; E2EError or
        ValueError (BAD_PARAMS) otherwise.
        """
        if method == "e2e.identity":
            identity = identity_of(self.agent)
            return {"identity": identity.public.hex(), "fingerprint": identity.fingerprint}
        if method == "e2e.hello":
            result, channel = e2e.agent_handshake(
                identity_of(self.agent), params, self._rekey_shift
            )
            self._make_room()
            self.sessions[channel.session_id] = Sealing(channel, client=False)
            return result
        if method == "e2e.close":
            session = params.get("session") if isinstance(params, dict) else None
            try:
                sealing = self.sessions.pop(bytes.fromhex(session), None)
            except (TypeError, ValueError):
                raise ValueError("session must be hex") from None
            if sealing is not None:
                for stream in list(sealing.streams):
                    self.owners.pop(stream, None)
            return {"closed": sealing is not None}
        raise KeyError(method)

    def _make_room(self):
        if len(self.sessions) < MAX_SESSIONS:
            return
        for session_id, sealing in self.sessions.items():
            if not sealing.streams:
                del self.sessions[session_id]
                return
        raise E2EError(Code.HANDSHAKE_FAILED, f"{MAX_SESSIONS} encrypted sessions are open")

    def open(self, frame):
        """
        A received frame -> (the plaintext frame or None to drop it, the
        Sealing it belongs to or None).  E2EError with the Sealing that
        failed as ``.sealing`` (None: only this request fails).
        """
        sealing = self.owners.get(frame.stream)
        if frame.type is wire.FrameType.REQUEST and frame.flags & wire.SEALED:
            sealing = self.sessions.get(session_of(frame))
            if sealing is None:
                error = E2EError(Code.UNKNOWN_SESSION, "no encrypted session with that id here")
                error.sealing = None
                raise error
        if sealing is None:
            return frame, None
        try:
            plain = sealing.open(frame)
        except E2EError as e:
            e.sealing = sealing
            raise
        except wire.ProtocolError as e:  # a sealed REQUEST holding no JSON object
            error = E2EError(Code.MALFORMED, e.message)
            error.sealing = sealing
            sealing.channel.failure = error
            raise error from None
        if plain is not None and plain.type is wire.FrameType.REQUEST:
            self.owners[frame.stream] = sealing
        return plain, sealing

    def seal(self, data):
        """
        An encoded frame the agent writes -> sealed if its stream belongs
        to an encrypted session.
        """
        stream = wire.HEADER.unpack_from(data)[3]
        sealing = self.owners.get(stream)
        if sealing is None:
            return data
        try:
            out = sealing.seal(data)
        except E2EError as e:
            e.sealing = sealing
            raise
        finally:
            if stream not in sealing.streams:
                self.owners.pop(stream, None)
        return out

    def end(self, sealing):
        """
        Forget a failed session; the wire streams it owned.
        """
        self.sessions.pop(sealing.channel.session_id, None)
        streams = [s for s, owner in self.owners.items() if owner is sealing]
        for stream in streams:
            del self.owners[stream]
        return streams
