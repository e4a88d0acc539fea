"""
The Docker runtime's worker threads and the SDK client they share.
"""

import threading

from twisted.python.threadpool import ThreadPool

from sandboxd.runtimes.interface import RuntimeFailure, RuntimeUnavailable


def engine_message(error):
    """
    The engine's own words for a failed request, without the SDK's URL.
    """
    explanation = getattr(error, "explanation", None)
    if explanation:
        return explanation.decode() if isinstance(explanation, bytes) else str(explanation)
    return str(error)


def status(error):
    """
    The HTTP status of a failed engine request, or None.
    """
    return getattr(error, "status_code", None)


class Engine:
    """
    A thread pool and the one SDK client its threads share (the SDK's
    session pools connections), built lazily in a pool thread because
    building it asks the engine for its API version.
    """

    def __init__(self, client_factory, max_threads):
        self._client_factory = client_factory
        self._client = None
        self._lock = threading.Lock()
        self.pool = ThreadPool(minthreads=0, maxthreads=max_threads, name="sandboxd-docker")
        self.pool.start()

    def run(self, work, args):
        """
        In a pool thread: call C{work(api, *args)}, raising
        L{RuntimeFailure} (or L{RuntimeUnavailable} when there is no engine).
        """
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._client_factory()
                except Exception as e:
                    raise RuntimeUnavailable(f"cannot reach the Docker engine: {e}") from e
            client = self._client
        try:
            return work(getattr(client, "api", client), *args)
        except RuntimeFailure:
            raise
        except Exception as e:
            raise RuntimeFailure(engine_message(e)) from e

    def close(self):
        """
        Blocking: wait for running calls, stop the threads, close the client.
        """
        self.pool.stop()
        if self._client is not None:
            self._client.close()
