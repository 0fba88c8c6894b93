"""Running many identical workers over one inventory of devices.

- :mod:`.shard`: which worker owns which device (rendezvous hashing of a stable device key);
- :mod:`.inventory`: a CSV or TOML file of device rows that expands into ``[[sources]]`` tables.

Neither imports a source or a sink: an inventory row is validated against its family's
``Config`` model through :mod:`solarbridge.registry`, like a ``[[sources]]`` table.
"""
