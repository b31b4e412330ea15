"""Lambda's REST routes that the embedded AWS answers itself."""

from modelwerk.local.services._routing import Route

ROUTES = (Route("POST", r"/2015-03-31/functions/(?P<name>[^/]+)/invocations", "Invoke"),)
