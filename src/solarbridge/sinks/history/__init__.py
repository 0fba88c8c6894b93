"""History sink: the SQLite store the dashboard and `solarbridge history` read."""
