"""
Request paths the router must never see: bytes that are not UTF-8 once
percent-decoded.  Klein would answer those with a plain-text 400; the API
answers every malformed request with its named error shape.
"""

from urllib.parse import unquote_to_bytes

from twisted.web.resource import Resource

from sandboxd.api.errors import error_body


class PathGuard(Resource):
    """
    Wraps the API's Klein resource: a path that is not UTF-8 is answered
    400 ``BAD_PATH``; every other request goes to ``routes``.
    """

    isLeaf = True

    def __init__(self, routes):
        super().__init__()
        self._routes = routes

    def render(self, request):
        try:
            unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"application/json")
            return error_body("BAD_PATH", "the request path is not UTF-8")
        return self._routes.render(request)
