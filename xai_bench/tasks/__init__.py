"""Tasks that are not benchmarks: ``train``, ``overview`` and ``gallery``."""
