"""The generator engine: new benchmark features that pass their tests and conflict with a task's.

`attempt` runs one whole attempt (prompt → agent → split → validate) and writes its folder;
`agent` is the coding agent's loop against an OpenAI-compatible model; `validate` runs the task's
tests and proofs through the sandbox and merges against the existing features; `dataset` runs
every task of a dataset folder, resumably. The decisions they take are pure and live in
`shared.policy.generation`; the task directory, the checkout, the commands and the conflict
merges are adapters (`shared.adapters.task_dir`, `workspace`, `task_commands`, `conflicts`).

May import: adapters, store (types), policy, ports, events, common. Never messaging or an entry point.
"""
