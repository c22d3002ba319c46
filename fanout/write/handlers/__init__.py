"""The worker's handlers, one module per kind of event; `fanout.write.pipeline` dispatches to them."""
