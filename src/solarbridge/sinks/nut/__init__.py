"""NUT port-file sink (the Enphase-to-NUT output)."""
