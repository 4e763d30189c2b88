"""Base models: the catalog (knowledge/models.yaml), loaders for the bundled, local and hub models."""
