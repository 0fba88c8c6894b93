"""The API's routers, one module per area; each reads the running daemon through :mod:`.deps`.

``devices`` (device list, latest values, live events), ``control``, ``history``, ``health`` (health and
Prometheus ``/metrics``), ``dashboard`` (the static web page). The GivTCP-compatible routes are
:mod:`solarbridge.api.givtcp`. :func:`solarbridge.api.app.create_app` puts them together.
"""
