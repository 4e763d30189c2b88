"""Evaluation: before vs after on held-out data, with measured baselines."""
