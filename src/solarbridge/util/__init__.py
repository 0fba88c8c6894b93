"""Small shared helpers: atomic files, backoff, time parsing."""
