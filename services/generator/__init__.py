"""The generator: new benchmark features that pass their tests and conflict with a task's features.

A task directory in the CooperBench layout is read (`task`), its features' patches are ranked
into hot spots (`hotspots`), a coding agent implements one new feature there (`prompt`, `agent`)
in a checkout at the base commit (`workspace`), its diff is split into feature.patch /
tests.patch (`split`) and validated: the task's tests pass (`validate`, counts from `counts`,
commands through the sandbox via `proc`) and the new feature conflicts with existing ones under
a plain `git merge` (`conflicts`). `job` runs one whole attempt; `api`, `cli` and `handlers`
are its faces.
"""
