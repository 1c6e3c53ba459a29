"""RecurrentTRPOPlus and MaskableTRPOPlus against RecurrentPPO and MaskablePPO."""
