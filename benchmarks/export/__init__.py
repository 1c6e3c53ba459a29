"""benchmarks/export (see benchmarks/README.md)."""
