"""Helpers for the reliability and security suites (issue 5): subprocess servers, DB fingerprints, tool calls."""
