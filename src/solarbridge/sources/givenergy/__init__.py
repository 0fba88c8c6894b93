"""givenergy device family."""
