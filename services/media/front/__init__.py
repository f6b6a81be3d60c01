"""The SIP front and its workers' side: the dispatch core (dispatch.py), the front process (server.py),
the worker's link (link.py) and the loss of a media process (loss.py). See docs/media.md, "Sharding"."""
