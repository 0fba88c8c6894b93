"""Home Assistant REST sink (GivTCP HA_OUTPUT): POST /api/states/sensor.<id>."""
