"""The ports: interfaces the services depend on, the values that cross them and the errors they raise.

May import: `shared.events`, `shared.common`.
"""
