"""Cross-cutting pieces every layer may use: settings, telemetry, redaction.

May import: nothing else of `shared`.
"""
