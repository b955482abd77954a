"""Shared infrastructure of papercode: registry, command, plotting, testing helpers and the OT engine."""
