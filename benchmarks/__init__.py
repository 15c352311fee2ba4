"""Benchmarks (`python -m benchmarks`, `make bench`): Repo Pilot's store and bus side by side with
baselines on the same servers. Never part of the test run's pass/fail."""
