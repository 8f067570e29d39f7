"""Mail as data: the issue's view, rendering, MIME, DKIM, VERP, addresses, capture servers."""
