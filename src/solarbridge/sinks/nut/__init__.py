"""NUT port-file sink: the sink (sink.py) and the dummy-ups variables, formulas and file rules (portfile.py)."""
