"""Helpers and fixtures shared by the tests (wait helpers live in tests/servers.py)."""
