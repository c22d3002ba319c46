"""The write side: events in, handlers, fan-out into inboxes, and the worker that runs them."""
