"""The repository scan: budgets, priority order, and what is never read."""

from __future__ import annotations

import pytest

from shared.engines.scan import is_secret, priority, render_scan, scan_repo

pytestmark = pytest.mark.unit


@pytest.fixture
def repo(tmp_path):
    files = {
        "README.md": "# Project\n",
        "pyproject.toml": "[project]\nname='p'\n",
        "pkg/__main__.py": "print('hi')\n",
        "pkg/core.py": "x = 1\n" * 3000,  # 18,000 chars: over the per-file budget
        "tests/test_core.py": "def test(): pass\n",
        "notes.txt": "notes\n",
        ".env": "TOKEN=secret-env\n",
        "deploy/id_rsa": "secret-key\n",
        "certs/server.pem": "secret-pem\n",
        "credentials.json": "{\"secret\": 1}\n",
        "node_modules/lib/index.js": "module\n",
        ".git/config": "[core]\n",
        "build/out.py": "built\n",
        "venv2/pyvenv.cfg": "home=/usr\n",
        "venv2/lib/site.py": "venv\n",
        "img/logo.png": "not really png",
        "data.bin2": "abc\x00def",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_reads_in_priority_order_and_skips_what_it_must(repo):
    scan = scan_repo(repo)
    assert [f.path for f in scan.files] == [
        "README.md", "pyproject.toml", "pkg/__main__.py", "pkg/core.py", "tests/test_core.py", "notes.txt"]
    text = render_scan(scan)
    for never in ("secret", "node_modules", ".git/", "build/out.py", "venv2", "logo.png", "data.bin2"):
        assert never not in text
    assert scan.stats["skipped"]["secrets"] == 4 and scan.stats["skipped"]["binary"] == 2


def test_per_file_and_total_budgets(repo):
    scan = scan_repo(repo, per_file=100, total=130)
    assert all(len(f.content) <= 100 for f in scan.files)
    assert sum(len(f.content) for f in scan.files) == 130
    assert scan.files[-1].path == "pkg/core.py" and scan.files[-1].truncated
    assert "notes.txt" in scan.listing and "notes.txt" not in [f.path for f in scan.files]
    big = next(f for f in scan_repo(repo).files if f.path == "pkg/core.py")
    assert big.truncated and len(big.content) == 8000 and big.size == 18000
    assert "(first 8000 of 18000 characters)" in render_scan(scan_repo(repo))


@pytest.mark.parametrize("name", [".env", ".env.local", "server.PEM", "tls.key", "id_rsa", "id_ed25519.pub",
                                  "credentials.json", ".netrc"])
def test_secret_names(name):
    assert is_secret(name)


@pytest.mark.parametrize("name", ["env.py", "keys.py", "README.md", "environment.yml"])
def test_not_secret_names(name):
    assert not is_secret(name)


def test_priority_ranks():
    assert [priority(p) for p in ("README.rst", "setup.py", "src/cli.py", "src/a.py", "tests/test_a.py", "x.txt")] \
        == [0, 1, 2, 3, 4, 5]
