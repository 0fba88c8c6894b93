"""File sinks: JSON lines, CSV and the atomic state file."""
