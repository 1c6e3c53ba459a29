"""The learning benchmark (tuned Zoo entries against the Zoo's TRPO), its record, sweeps and report."""
