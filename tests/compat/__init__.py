"""Compatibility suites: real clients and tools used as oracles against our engines (issue #15)."""
