"""Gig configs and presets (TOML data, shipped with the package)."""
