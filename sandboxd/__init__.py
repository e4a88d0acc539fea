"""sandboxd: sandboxes as a service on Twisted."""

__version__ = "0.1.0"
