"""Example gig setups (TOML)."""
