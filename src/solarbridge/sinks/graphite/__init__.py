"""Graphite/carbon sink: plaintext and pickle wire formats (wire.py) and the sender."""
