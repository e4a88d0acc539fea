"""
Tests for L{sandboxd.api.sentlog}: what a session sent, kept to send again.
"""

from twisted.trial.unittest import TestCase

from sandboxd.api.sentlog import SentLog


class SentLogTests(TestCase):
    def test_since(self):
        """
        C{since(n)} is what was sent after the n-th message, oldest first.
        """
        log = SentLog()
        for message in [b"a", b"b", b"c"]:
            log.sent(message)
        self.assertEqual(
            [log.since(n) for n in range(4)],
            [[b"a", b"b", b"c"], [b"b", b"c"], [b"c"], []],
        )

    def test_limit(self):
        """
        Only the newest C{limit} bytes are kept; asking for older ones gives
        None, while the count goes on.
        """
        log = SentLog(limit=5)
        for message in [b"aa", b"bb", b"cc"]:
            log.sent(message)
        self.assertEqual((log.count, log.since(1), log.since(0)), (3, [b"bb", b"cc"], None))

    def test_notKept(self):
        """
        A message sent without C{keep} is counted, and nothing before it
        can be sent again.
        """
        log = SentLog()
        log.sent(b"a")
        log.sent(b"b", keep=False)
        self.assertEqual((log.count, log.since(2), log.since(1)), (2, [], None))

    def test_moreThanSent(self):
        """
        A client claiming more messages than were sent is an error.
        """
        log = SentLog()
        log.sent(b"a")
        self.assertRaises(ValueError, log.since, 2)
