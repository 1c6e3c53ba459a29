"""The one-liner benchmark (which defaults), its diagnosis, the critic at any reward scale, normalization's cost."""
