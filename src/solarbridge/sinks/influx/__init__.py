"""InfluxDB v2 sink: line protocol encoding (lineprotocol.py) and the HTTP writer with a durable spool."""
