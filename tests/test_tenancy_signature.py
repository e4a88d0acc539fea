"""
The canonical string and the signature verifier (sandboxd/tenancy), as pure
logic: refusals with their named codes, and Hypothesis properties (any
changed byte of a signed request is refused; query order does not matter).
"""

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.tenancy import canonical
from sandboxd.tenancy.canonical import MalformedField, canonical_query, canonical_string
from sandboxd.tenancy.signer import public_key_text, sign
from sandboxd.tenancy.verifier import (
    Quotas,
    ReplayCache,
    SignatureRefused,
    Tenant,
    Verifier,
    body_digest,
)

NOW = 1_800_000_000
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def raw_public(key):
    return base64.b64decode(public_key_text(key))


def verifier(*keys, window=30, entries=1000):
    clock = Clock()
    clock.advance(NOW)
    return Verifier([raw_public(k) for k in keys or (KEY,)], clock, window, entries), clock


def lookup(headers):
    lowered = {k.lower(): v.encode() if isinstance(v, str) else v for k, v in headers.items()}
    return lambda name: lowered.get(name.lower())


def check(v, method, target, headers, body=b""):
    return v.verify(method, target, lookup(headers), body)


class CanonicalStringTests(SynchronousTestCase):
    """
    The exact bytes of the canonical string.
    """

    def test_layout(self):
        """
        Eleven lines in the documented order, quotas "" when absent, query
        pairs sorted, no trailing newline (docs/multi-tenant.md's example).
        """
        text = canonical_string(
            b"POST", b"/sandboxes", b"b=2&a=1", body_digest(b"{}"), b"alice",
            (b"5", b"", b"3"), b"1800000000", b"n0nce-n0nce-n0nce")
        self.assertEqual(text, b"\n".join([
            b"sandboxd-sig-v1", b"POST", b"/sandboxes", b"a=1&b=2",
            b"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            b"alice", b"5", b"", b"3", b"1800000000", b"n0nce-n0nce-n0nce"]))

    def test_query_pairs(self):
        """
        Empty pairs vanish, a bare name gets "=", escapes are kept as sent.
        """
        self.assertEqual(canonical_query(b"z&&a=%41&a=A"), b"a=%41&a=A&z=")

    def test_newline_refused(self):
        """
        A field holding a newline (which would let two requests share one
        string) is refused, naming the field.
        """
        with self.assertRaises(MalformedField) as caught:
            canonical_string(b"GET", b"/x", b"", body_digest(b""), b"al\nice",
                             (b"", b"", b""), b"1", b"n" * 16)
        self.assertEqual(caught.exception.field, canonical.IDENTITY)


class RefusalTests(SynchronousTestCase):
    """
    Each way a signed request is refused, with its code.
    """

    def refused(self, v, method, target, headers, body=b""):
        with self.assertRaises(SignatureRefused) as caught:
            check(v, method, target, headers, body)
        return caught.exception.code

    def test_accepted(self):
        """
        A well-signed request gives its identity and quotas.
        """
        v, _ = verifier()
        headers = sign(KEY, "POST", "/sandboxes", b'{"ttl": 5}', "alice", NOW,
                       Quotas(max_concurrent=3, max_ttl=60))
        self.assertEqual(check(v, b"POST", b"/sandboxes", headers, b'{"ttl": 5}'),
                         Tenant("alice", Quotas(3, 60, None)))

    def test_missing(self):
        """
        No signature headers at all: SIGNATURE_MISSING.
        """
        v, _ = verifier()
        self.assertEqual(self.refused(v, b"GET", b"/sandboxes", {}), "SIGNATURE_MISSING")

    def test_malformed(self):
        """
        A signature that is not base64 of 64 bytes, or a non-numeric
        timestamp: SIGNATURE_MALFORMED.
        """
        v, _ = verifier()
        headers = sign(KEY, "GET", "/sandboxes", b"", "alice", NOW)
        self.assertEqual(self.refused(v, b"GET", b"/sandboxes",
                                      dict(headers, **{canonical.SIGNATURE: "abc"})),
                         "SIGNATURE_MALFORMED")
        self.assertEqual(self.refused(v, b"GET", b"/sandboxes",
                                      dict(headers, **{canonical.TIMESTAMP: "soon"})),
                         "SIGNATURE_MALFORMED")

    def test_forged(self):
        """
        A signature of the right shape that nobody made: SIGNATURE_INVALID.
        """
        v, _ = verifier()
        headers = sign(KEY, "GET", "/sandboxes", b"", "alice", NOW)
        headers[canonical.SIGNATURE] = base64.b64encode(b"\x01" * 64).decode()
        self.assertEqual(self.refused(v, b"GET", b"/sandboxes", headers), "SIGNATURE_INVALID")

    def test_wrong_key(self):
        """
        Signed by a key the daemon does not list: SIGNATURE_INVALID.
        """
        v, _ = verifier(KEY)
        headers = sign(OTHER, "GET", "/sandboxes", b"", "alice", NOW)
        self.assertEqual(self.refused(v, b"GET", b"/sandboxes", headers), "SIGNATURE_INVALID")

    def test_expired_and_future(self):
        """
        31 s old: SIGNATURE_EXPIRED; 31 s ahead: SIGNATURE_FUTURE; 30 s
        either way is inside the window.
        """
        v, _ = verifier()
        old = sign(KEY, "GET", "/x", b"", "alice", NOW - 31)
        ahead = sign(KEY, "GET", "/x", b"", "alice", NOW + 31)
        self.assertEqual(self.refused(v, b"GET", b"/x", old), "SIGNATURE_EXPIRED")
        self.assertEqual(self.refused(v, b"GET", b"/x", ahead), "SIGNATURE_FUTURE")
        check(v, b"GET", b"/x", sign(KEY, "GET", "/x", b"", "alice", NOW - 30))
        check(v, b"GET", b"/x", sign(KEY, "GET", "/x", b"", "alice", NOW + 30))

    def test_replayed(self):
        """
        The same signed request twice: the second is SIGNATURE_REPLAYED.
        """
        v, _ = verifier()
        headers = sign(KEY, "DELETE", "/sandboxes/sbx-1", b"", "alice", NOW)
        check(v, b"DELETE", b"/sandboxes/sbx-1", headers)
        self.assertEqual(self.refused(v, b"DELETE", b"/sandboxes/sbx-1", headers),
                         "SIGNATURE_REPLAYED")

    def test_body_tampered(self):
        """
        The signed hash is of another body: BODY_TAMPERED.
        """
        v, _ = verifier()
        headers = sign(KEY, "POST", "/sandboxes", b'{"ttl": 5}', "alice", NOW)
        self.assertEqual(self.refused(v, b"POST", b"/sandboxes", headers, b'{"ttl": 6}'),
                         "BODY_TAMPERED")

    def test_query_reordered(self):
        """
        The same query pairs in another order verify (a proxy may reorder).
        """
        v, _ = verifier()
        headers = sign(KEY, "GET", "/events/history?limit=5&after=2", b"", "alice", NOW)
        check(v, b"GET", b"/events/history?after=2&limit=5", headers)

    def test_rotation(self):
        """
        With two keys listed, both verify; after a reload without the old
        one, its signatures are refused and the new one's accepted.
        """
        v, _ = verifier(KEY, OTHER)
        check(v, b"GET", b"/x", sign(KEY, "GET", "/x", b"", "alice", NOW))
        check(v, b"GET", b"/x", sign(OTHER, "GET", "/x", b"", "alice", NOW))
        v.reload([raw_public(OTHER)])
        self.assertEqual(self.refused(v, b"GET", b"/x", sign(KEY, "GET", "/x", b"", "a", NOW)),
                         "SIGNATURE_INVALID")
        check(v, b"GET", b"/x", sign(OTHER, "GET", "/x", b"", "alice", NOW))

    def test_failed_signature_spends_no_nonce(self):
        """
        A refused request's nonce is not remembered (a forger cannot fill
        the replay cache).
        """
        v, _ = verifier()
        headers = sign(OTHER, "GET", "/x", b"", "alice", NOW)
        self.refused(v, b"GET", b"/x", headers)
        self.assertEqual(len(v.replays), 0)


class ReplayCacheTests(SynchronousTestCase):
    """
    The bounded replay cache.
    """

    def test_forgets_after_window(self):
        """
        A nonce is forgotten once its timestamp is out of the window (the
        window refuses that request anyway), freeing its room.
        """
        clock = Clock()
        clock.advance(NOW)
        cache = ReplayCache(clock, window=30, entries=2)
        cache.add(b"a" * 16, NOW)
        cache.add(b"b" * 16, NOW)
        with self.assertRaises(SignatureRefused) as caught:
            cache.add(b"c" * 16, NOW)
        self.assertEqual(caught.exception.code, "REPLAY_CACHE_FULL")
        clock.advance(32)
        cache.add(b"c" * 16, NOW + 32)
        self.assertEqual(len(cache), 1)


_text = st.binary(min_size=0, max_size=40)


class PropertyTests(SynchronousTestCase):
    """
    Hypothesis properties of builder and verifier.
    """

    @settings(max_examples=150, deadline=None)
    @given(
        body=st.binary(max_size=200),
        identity=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,30}", fullmatch=True),
        pairs=st.lists(st.tuples(st.from_regex(r"[a-z]{1,5}", fullmatch=True),
                                 st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True)), max_size=5),
        quotas=st.tuples(*[st.one_of(st.none(), st.integers(0, 10**6))] * 3),
        data=st.data(),
    )
    def test_any_change_refused(self, body, identity, pairs, quotas, data):
        """
        A request verifies as signed, in any order of its query pairs; any
        change to one byte of method, path, query, body, identity, quota,
        timestamp or nonce is refused.
        """
        v, _ = verifier(entries=10**6)
        query = "&".join(f"{k}={val}" for k, val in pairs)
        target = "/sandboxes/sbx-1/stats" + (f"?{query}" if query else "")
        headers = sign(KEY, "POST", target, body, identity, NOW, Quotas(*quotas))
        shuffled = data.draw(st.permutations(pairs))
        reordered = "/sandboxes/sbx-1/stats" + (
            "?" + "&".join(f"{k}={val}" for k, val in shuffled) if shuffled else "")
        self.assertEqual(check(v, b"POST", reordered.encode(), headers, body).identity, identity)

        what = data.draw(st.sampled_from(
            ["method", "path", "query", "body", canonical.IDENTITY, canonical.TIMESTAMP,
             canonical.NONCE, canonical.MAX_CONCURRENT, canonical.MAX_TTL,
             canonical.MAX_TEMPLATES]))
        method, target_b, changed = b"POST", target.encode(), dict(headers)

        def flip(value):
            raw = bytearray(value)
            if not raw:
                return b"1"
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0x21, 0x7e).filter(lambda b: b != raw[i]))
            return bytes(raw)

        if what == "method":
            method = b"PUT"
        elif what == "path":
            path, _, rest = target_b.partition(b"?")
            raw = bytearray(path)
            i = data.draw(st.integers(1, len(raw) - 1))
            raw[i] = data.draw(st.sampled_from(b"abcdefghijklmnopqrstuvwxyz-").filter(
                lambda b: b != raw[i]))
            target_b = bytes(raw) + (b"?" + rest if rest else b"")
        elif what == "query":
            # One character of one pair's name or value changes (its
            # multiset of pairs is then another one), or a pair is added.
            if pairs:
                i = data.draw(st.integers(0, len(pairs) - 1))
                k, val = pairs[i]
                pairs = list(pairs)
                pairs[i] = (k, val + "z")
            else:
                pairs = [("x", "1")]
            target_b = ("/sandboxes/sbx-1/stats?"
                        + "&".join(f"{k}={val}" for k, val in pairs)).encode()
        elif what == "body":
            body = flip(body)
        else:
            changed[what] = flip(headers.get(what, "").encode()).decode("latin-1")
        fresh = verifier(entries=10**6)[0]
        with self.assertRaises(SignatureRefused):
            check(fresh, method, target_b, changed, body)

    @settings(max_examples=200, deadline=None)
    @given(a=st.tuples(_text, _text, _text), b=st.tuples(_text, _text, _text))
    def test_injective(self, a, b):
        """
        Two different well-formed field tuples never build the same string.
        """
        def build(fields):
            identity, path, nonce = fields
            try:
                return canonical_string(b"GET", b"/" + path, b"", body_digest(b""),
                                        identity, (b"", b"", b""), b"1", nonce)
            except MalformedField:
                return None

        x, y = build(a), build(b)
        if x is not None and y is not None and a != b:
            self.assertNotEqual(x, y)


class DocumentedExampleTests(SynchronousTestCase):
    """
    docs/multi-tenant.md's worked example is what the code builds.
    """

    def test_worked_example(self):
        """
        The example's canonical string and every header value appear in the
        document exactly as the signer makes them, and the daemon's
        verifier accepts them with the example's public key.
        """
        import os

        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "multi-tenant.md")
        with open(path) as f:
            text = f.read()
        body = b'{"profile": "default", "ttl": 600}'
        quotas = Quotas(5, 3600, None)
        headers = sign(KEY, "POST", "/sandboxes?b=2&a=1", body, "team-a", 1800000000, quotas,
                       nonce="n0nce-0123456789abcdef")
        for name, value in headers.items():
            self.assertIn(f"{name}: {value}\n", text)
        string = canonical_string(b"POST", b"/sandboxes", b"b=2&a=1", body_digest(body),
                                  b"team-a", quotas.headerValues(), b"1800000000",
                                  b"n0nce-0123456789abcdef")
        self.assertIn(repr(string), text)
        self.assertIn(public_key_text(KEY), text)
        clock = Clock()
        clock.advance(1800000000)
        tenant = Verifier([raw_public(KEY)], clock).verify(
            b"POST", b"/sandboxes?b=2&a=1", lookup(headers), body)
        self.assertEqual(tenant, Tenant("team-a", quotas))
