"""Benchmarks of eventflow: `python -m bench --help`. Figures, never assertions."""
