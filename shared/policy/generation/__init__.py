"""The generator's pure decisions: the task model (`task`), hot spots of the task's features
(`hotspots`), the agent's prompt (`prompt`), splitting a diff into feature / tests (`split`), test
counts read from runner output (`counts`), which tests a patch adds (`newtests`), mutants of added
lines (`mutate`), the proofs a valid feature must pass (`proofs`) and the verdict over them, the
backend and the local runner script (`verdict`).

May import: ports, events, common (and the rest of policy). No I/O: reading a task directory is
`shared.adapters.task_dir`, running anything is `shared.engines.generator`.
"""
