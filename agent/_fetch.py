"""
The HTTP side of net.fetch (urllib in a thread), imported on first use.
"""

import base64
import binascii
import http.client
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

from .errors import RequestError, bad_param
from .transfer import _Cancelled
from .wire import CHUNK_SIZE


class _TooManyRedirects(Exception):
    pass


class _Redirects(urllib.request.HTTPRedirectHandler):
    """
    Follows at most ``limit`` redirects; with 0 the 3xx itself is the
    response.
    """

    def __init__(self, limit):
        self.limit = limit
        self.count = 0

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if self.limit == 0:
            return None
        self.count += 1
        if self.count > self.limit:
            raise _TooManyRedirects(newurl)
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    http_error_301 = http_error_302 = http_error_303 = http_error_307 = (
        urllib.request.HTTPRedirectHandler.http_error_302
    )

    def http_error_308(self, req, fp, code, msg, headers):
        return self.http_error_302(req, fp, code, msg, headers)


#: The egress proxy's header naming its error (sandboxd/egress/proxy.py).
PROXY_ERROR = "Sandbox-Proxy-Error"


class _ViaProxy(urllib.request.AbstractHTTPHandler):
    """
    Sends http and https requests alike to the daemon's egress proxy at
    ``proxy`` (HOST:PORT), in absolute form over plain HTTP: the proxy
    makes the upstream (TLS) connection and puts the sandbox's secrets in
    the headers.  Runs before the default handlers.
    """

    handler_order = 100

    def __init__(self, proxy, verify):
        super().__init__()
        self.proxy = proxy
        self.verify = verify

    def http_open(self, req):
        req.selector = req.full_url
        req.host = self.proxy
        if not self.verify:
            req.add_unredirected_header("Sandbox-Proxy-Insecure", "1")
        return self.do_open(http.client.HTTPConnection, req)

    https_open = http_open


def make_request(args):
    url = args["url"]
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_param("url", "must be an http:// or https:// URL with a host")
    method = args["method"].upper()
    if not method.isalpha():
        raise bad_param("method", "must be an HTTP method name")
    if args["body"] is not None and args["body_base64"] is not None:
        raise bad_param("body", "body and body_base64 exclude each other")
    data = None
    if args["body"] is not None:
        data = args["body"].encode()
    elif args["body_base64"] is not None:
        try:
            data = base64.b64decode(args["body_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise bad_param("body_base64", "is not valid base64")
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in (args["headers"] or {}).items():
        request.add_header(name, value)
    if not request.has_header("User-agent"):
        request.add_header("User-agent", "sandbox-agent")
    return request


def fetch(request, args, writer, stream, loop, proxy=None):
    context = ssl.create_default_context()
    if not args["verify"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    redirects = _Redirects(args["max_redirects"])
    handlers = [urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context),
                redirects]
    if proxy:
        handlers.append(_ViaProxy(proxy, args["verify"]))
    opener = urllib.request.build_opener(*handlers)
    url = request.full_url
    try:
        try:
            response = opener.open(request, timeout=args["timeout"])
        except urllib.error.HTTPError as e:
            response = e  # 4xx, 5xx and unfollowed 3xx are answers too
        with response:
            failed = proxy and response.headers.get(PROXY_ERROR)
            if failed:
                message = response.read(4096).decode("utf-8", "replace")
                raise RequestError(failed, f"{url}: {message}", url=url)
            head = {
                "status": response.status if hasattr(response, "status") else response.code,
                "reason": getattr(response, "reason", "") or "",
                "headers": [[k, v] for k, v in response.headers.items()],
                "url": response.geturl(),
            }
            loop.call_soon_threadsafe(stream.send_event, head)
            room = args["max_body"]
            size = 0
            truncated = False
            while True:
                block = response.read(min(CHUNK_SIZE, room + 1) if room >= 0 else CHUNK_SIZE)
                if not block:
                    break
                if len(block) > room:
                    block = block[:room]
                    truncated = True
                if block:
                    writer.write(block)
                    size += len(block)
                    room -= len(block)
                if truncated:
                    break
        return dict(head, size=size, truncated=truncated)
    except _Cancelled:
        raise RequestError("CANCELLED", "cancelled")
    except _TooManyRedirects as e:
        raise RequestError(
            "TOO_MANY_REDIRECTS", f"more than {args['max_redirects']} redirects (next: {e})", url=url
        )
    except urllib.error.URLError as e:
        raise _network_error(e.reason, url)
    except (OSError, http.client.HTTPException) as e:
        raise _network_error(e, url)


def _network_error(reason, url):
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return RequestError("TIMEOUT", f"{url}: timed out", url=url)
    if isinstance(reason, ssl.SSLError):
        return RequestError("TLS_ERROR", f"{url}: {reason}", url=url)
    if isinstance(reason, ConnectionRefusedError):
        return RequestError("CONNECTION_REFUSED", f"{url}: connection refused", url=url)
    if isinstance(reason, socket.gaierror):
        return RequestError("HOST_NOT_FOUND", f"{url}: {reason}", url=url)
    return RequestError("NET_ERROR", f"{url}: {reason}", url=url)
