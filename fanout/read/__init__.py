"""The read side: merged feeds, their caches, live streams and the read API."""
