"""What every benchmark script shares: the tidy table's locked append (:mod:`.table`), the provenance of a run
(:mod:`.provenance`), the Zoo's and the shipped hyperparameter files (:mod:`.zoo`) and the statistics (:mod:`.stats`)."""
