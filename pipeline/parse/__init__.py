"""The parse stage: an HTML page's fields and links, on the event loop."""
