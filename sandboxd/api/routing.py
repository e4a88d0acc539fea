"""
The API's Klein: it notes on each request the route template it matched,
so that the metrics (sandboxd/metrics.py) label the request without
matching its path a second time.
"""

from klein import Klein


class TemplateNotingKlein(Klein):
    """
    Klein that sets ``request.sandboxd_route`` (``/sandboxes/<sandbox_id>``)
    before running the route that matched.
    """

    def execute_endpoint(self, endpoint, request, *args, **kwargs):
        request.sandboxd_route = next(self.url_map.iter_rules(endpoint)).rule
        return super().execute_endpoint(endpoint, request, *args, **kwargs)
