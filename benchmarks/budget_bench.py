"""`python -m benchmarks.budget_bench`: how long the offline engine takes to read a repository
holding a 7 MB Python file and a 60 MB binary (both skipped by the size/binary budget), against a
repository without them. Time lives here, not in the tests (tests/integration/test_budgets.py
checks the skip and the peak memory)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = (
    "import sys; from pathlib import Path\n"
    "from shared.engines.rules import facts as f\n"
    "from shared.engines.rules.analyze import analyze_facts\n"
    "from shared.engines.rules.engine import collect_findings\n"
    "from shared.engines.scan import scan_repo\n"
    "r = Path(sys.argv[1]); x = f.collect(r); collect_findings(r, x); analyze_facts(x); scan_repo(r)\n"
)


def write_big_files(root: Path) -> None:
    """A 7 MB generated source file and a 60 MB binary (the sizes a user's repository had)."""
    with open(root / "generated.py", "w") as fh:
        n = 0
        while fh.tell() < 7 * 1024 * 1024:
            fh.write(f"VALUE_{n} = {n} * 2\n")
            n += 1
    with open(root / "assets.bin", "wb") as fh:
        chunk = os.urandom(1024 * 1024)
        for _ in range(60):
            fh.write(chunk)


def _repo(root: Path, big: bool) -> Path:
    root.mkdir(parents=True)
    (root / "app.py").write_text("import os\n\n\ndef main():\n    return os.getcwd()\n")
    if big:
        write_big_files(root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def _measure(repo: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", SCRIPT, str(repo)], check=True)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        small = _measure(_repo(Path(tmp) / "small", big=False))
        big = _measure(_repo(Path(tmp) / "big", big=True))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"read a small repository: {small:.2f} s")
    print(f"read it with a 7 MB .py and a 60 MB binary (skipped): {big:.2f} s ({big / small:.2f}x)")
    print(f"peak RSS of a child: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
