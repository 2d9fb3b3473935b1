"""Benchmarks of the TWM hot paths: one script per measure, `python -m bench.<name> --help` (see bench/README.md)."""
