"""Benchmarks that print tables (``make bench``); not part of the test run's pass/fail."""
