"""benchmarks/defaults (see benchmarks/README.md)."""
