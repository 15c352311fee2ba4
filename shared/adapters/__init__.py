"""Adapters to the outside world: git, workspaces, forges (local, remote, GitHub), sandboxes,
target environments, JUnit reports, static analyzers (ruff, bandit) and the review signals they measure.

May import: policy, ports, events, common. Never an engine, the messaging layer or an entry point.
"""
