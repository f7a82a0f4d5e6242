"""The parts of ``bench.webhook_intake``: the signed load. (Its profiled ``serve`` is
``bench.profiled_serve``.)"""
