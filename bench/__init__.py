"""Benchmarks, the demo, the workload generator and their reports: tools that drive the product, not
part of it (the deployed image installs the package without the `bench` extra, so without matplotlib).

The demo lives here rather than in services/ because it shares the workload generator and the process
harness (deploy/processes.py) with the benchmarks, and is never deployed: `fanout demo` runs it against
the local stack, in a keyspace and topics of its own.
"""
