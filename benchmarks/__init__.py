"""The project's benchmarks: scripts run as ``python -m benchmarks.<folder>.<script>`` from the repository root, their
tidy tables and reports (``README.md`` maps each question to its script and table). Not part of the wheel."""
