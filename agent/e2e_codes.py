"""
The named errors of end-to-end encrypted sessions (standard library only:
the agent's server knows them before it ever loads agent.e2e).
"""


class Code:
    """
    The named errors of encrypted sessions (the ``code`` of an ERROR, and of
    E2EError).  Each ends the encrypted session.
    """

    #: The handshake failed (bad hello, wrong confirmation).
    HANDSHAKE_FAILED = "E2E_HANDSHAKE_FAILED"
    #: The agent's static key is not the pinned one.
    IDENTITY_MISMATCH = "E2E_IDENTITY_MISMATCH"
    #: A sealed frame failed authentication: changed, dropped, reordered
    #: within its stream or moved to another stream.
    TAMPERED = "E2E_TAMPERED"
    #: A frame's counter is not above the last one: replayed or reordered.
    REPLAYED = "E2E_REPLAYED"
    #: A frame that must be sealed arrived in clear.
    UNSEALED = "E2E_UNSEALED"
    #: A sealed frame names a session the agent does not hold.
    UNKNOWN_SESSION = "E2E_UNKNOWN_SESSION"
    #: The peer cannot do encryption (no cryptography package in the image).
    UNSUPPORTED = "E2E_UNSUPPORTED"
    #: A sealed frame is malformed (too short, bad prefix, method mismatch).
    MALFORMED = "E2E_MALFORMED"
    #: The session's counter reached its bound.
    EXHAUSTED = "E2E_EXHAUSTED"


#: Every code above: an ERROR carrying one ends the encrypted session.
CODES = frozenset(v for k, v in vars(Code).items() if k.isupper())


class E2EError(Exception):
    """
    An encrypted session failed; ``code`` is one of ``Code``.
    """

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
