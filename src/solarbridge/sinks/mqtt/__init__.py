"""MQTT sink: JSON state per device, Home Assistant discovery (discovery.py), topic layouts (layouts.py)."""
