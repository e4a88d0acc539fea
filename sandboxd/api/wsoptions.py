"""
Autobahn server connections that take their factory's options without the
debug dump Autobahn makes of them.
"""


class FactoryOptions:
    """
    Mixin for an Autobahn WebSocket server protocol: copies the factory's
    options (``CONFIG_ATTRS``) onto the connection when it is made, as
    Autobahn does, and leaves Autobahn's own copy nothing to go through.
    Autobahn pretty-prints every option it copies for a debug log line, on
    every connection, whether debug logging is on or not: 29 options
    through pprint, 0.3-0.7 ms of CPU for each session opened (a tenth to
    a fifth of what the daemon spends on a create with its session).
    """

    def connectionMade(self):
        factory = self.factory
        for name in self.CONFIG_ATTRS:
            if not hasattr(self, name):
                setattr(self, name, getattr(factory, name))
        # Read by Autobahn's copy only (autobahn.websocket.protocol).
        self.CONFIG_ATTRS = ()
        super().connectionMade()
