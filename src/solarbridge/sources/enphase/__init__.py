"""enphase device family."""
