"""The schedule stage: which URLs a crawl follows, which it has seen, and the queue they wait in."""
