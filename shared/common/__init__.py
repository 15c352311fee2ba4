"""Cross-cutting pieces every layer may use: settings, telemetry, redaction, the one door for
writes into a working copy (`fs.write_inside`).

May import: nothing else of `shared`.
"""
