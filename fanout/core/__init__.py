"""The pure core: what the product decides, with no I/O (model, policy, events, ids, ports)."""
