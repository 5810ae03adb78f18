"""Simulators of accounting-package APIs on real loopback ports (tests, demos)."""
