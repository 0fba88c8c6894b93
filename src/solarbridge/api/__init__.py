"""The web service: dashboard, REST API, server-sent events, Prometheus metrics (see docs/api.md)."""
