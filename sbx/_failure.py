"""
The error a command ends with, shared by the command modules.
"""


class Failure(Exception):
    """
    A command failed; the message is printed as ``sbx: error: <message>``.
    """
