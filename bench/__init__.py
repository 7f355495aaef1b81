"""`make bench`: supportdesk's latency, throughput, connections and memory, measured in
one run beside the floor (a minimal relay with no Django), on one machine, over loopback.

`python -m bench --help` lists the parameters; docs/performance.md explains the method
and the figures.
"""
