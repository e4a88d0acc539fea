"""
The SDK's sans-IO Server-Sent Events reader (sandbox/_sse.py).
"""

from twisted.trial.unittest import SynchronousTestCase

from sandbox._sse import MAX_LINE, SSEReader


class SSEReaderTests(SynchronousTestCase):
    def test_split_anywhere(self):
        """
        Bytes fed in any pieces give the same events: id, type and data.
        """
        stream = (b": hello\n\nid: 7\nevent: sandbox.created\ndata: {\"a\": 1}\n\n"
                  b"event: gap\ndata: {}\n\n")
        for size in (1, 2, 5, len(stream)):
            reader = SSEReader()
            messages = []
            for i in range(0, len(stream), size):
                messages.extend(reader.feed(stream[i:i + size]))
            self.assertEqual([(m.id, m.event, m.data) for m in messages],
                             [("7", "sandbox.created", '{"a": 1}'), (None, "gap", "{}")])
            self.assertEqual(reader.last_id, "7")

    def test_bare_id_and_crlf(self):
        """
        An id with no data sets last_id without an event; CRLF line ends
        and several data lines (joined by newlines) are read as the
        standard says; a message without event: is "message".
        """
        reader = SSEReader()
        self.assertEqual(reader.feed(b"id: 41\r\n\r\n"), [])
        self.assertEqual(reader.last_id, "41")
        [message] = reader.feed(b"data: one\r\ndata: two\r\n\r\n")
        self.assertEqual((message.id, message.event, message.data), (None, "message", "one\ntwo"))
        self.assertEqual(reader.last_id, "41")

    def test_line_bound(self):
        """
        A line longer than MAX_LINE without an end is refused, not held.
        """
        reader = SSEReader()
        self.assertRaises(ValueError, reader.feed, b"data: " + b"x" * MAX_LINE)
