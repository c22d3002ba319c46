"""The worker's handlers, one module per kind of event; `fanout.pipeline` dispatches to them."""
