"""benchmarks/families (see benchmarks/README.md)."""
