"""Speed against sb3_contrib.TRPO, the profile of TRPOPlus's time, the NumPy rollout's A/B."""
