"""sunsynk device family."""
