"""The parts of ``bench.relayer_throughput``: the load, its progress, the processes it starts, the
checks and the report."""
