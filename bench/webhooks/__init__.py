"""The parts of ``bench.webhook_intake``: the signed load and a profiled ``serve``."""
