"""A command or a service whose import is broken stops start-up with the error, instead of
silently disappearing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import services
from shared.app.runtime import available_services, service_routes

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broken_service(tmp_path, monkeypatch) -> str:
    """A service folder `broken` whose main imports a module that does not exist."""
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "__init__.py").write_text("")
    (tmp_path / "broken" / "main.py").write_text("import no_such_module_for_repo_pilot  # noqa\nROUTES = []\n")
    monkeypatch.setattr(services, "__path__", [*services.__path__, str(tmp_path)])
    monkeypatch.setattr(services, "SERVICES", (*services.SERVICES, "broken"))
    yield "broken"
    for name in ("services.broken.main", "services.broken"):
        sys.modules.pop(name, None)


def test_an_unknown_service_is_a_value_error():
    with pytest.raises(ValueError, match="unknown service 'nosuch'"):
        service_routes("nosuch")


def test_a_broken_service_raises_its_import_error(broken_service):
    with pytest.raises(ModuleNotFoundError) as info:
        service_routes(broken_service)
    assert info.value.name == "no_such_module_for_repo_pilot"
    with pytest.raises(ModuleNotFoundError):
        available_services()


def test_every_shipped_service_loads():
    assert available_services() == list(services.SERVICES)


def test_a_broken_command_module_stops_the_cli_at_start():
    # `None` in sys.modules makes importing that module raise ImportError, as a broken one would.
    code = ("import sys; sys.modules['shared.app.generate'] = None\n"
            "import shared.app.cli\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ModuleNotFoundError: import of shared.app.generate halted" in proc.stderr
    ok = subprocess.run([sys.executable, "-c", "import shared.app.cli as c; print(c.app.registered_commands[-1].name)"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.stdout.strip() == "generate", ok.stderr


@pytest.mark.parametrize("name", services.SERVICES)
def test_each_handler_declares_what_it_uses_and_deps_provides_it(name, tmp_path):
    import importlib
    import inspect

    from tests.support.fakes import fake_deps

    module = importlib.import_module(f"services.{name}.handlers")
    handlers = [f for n, f in vars(module).items() if n.startswith("on_") and inspect.iscoroutinefunction(f)]
    assert handlers and all(inspect.signature(f).parameters["deps"].annotation == "Uses" for f in handlers)
    assert isinstance(fake_deps(tmp_path, {}), module.Uses)
