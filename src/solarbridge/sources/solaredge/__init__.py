"""solaredge device family."""
