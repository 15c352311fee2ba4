"""A pytest plugin the generator loads into a task's own test runs (`PYTEST_PLUGINS`, with this
folder on `PYTHONPATH`): every pytest session writes its JUnit report to a fresh file under
`$REPO_PILOT_JUNIT_DIR`, so a run_tests.sh that calls pytest twice leaves two reports and the
counts come from the reports, not from console text.

Beside each report it writes `tests-<id>.json`: every test the session collected with its file,
the source lines of its function (decorators included), its outcome and the exception type that
failed it, and every collection error with its text. That is what tells the generator which tests
a tests.patch added or changed, and whether they failed on an assertion or on a missing name.

It imports nothing but pytest and the standard library: it runs inside the task's environment.
A task that asks for its own `--junitxml` keeps it (and its counts come from the console).
"""

import inspect
import json
import os
import uuid

import pytest

_KEY = "_repo_pilot_records"
_CONFIG = {}  # collection reports carry no config; one session per process here


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    directory = os.environ.get("REPO_PILOT_JUNIT_DIR")
    if not directory or hasattr(config, "workerinput"):  # xdist workers: the controller writes
        return
    _CONFIG["config"] = config
    session = f"{os.getpid()}-{uuid.uuid4().hex}"
    setattr(config, _KEY, {"path": os.path.join(directory, f"tests-{session}.json"), "tests": {},
                           "collect_errors": []})
    if getattr(config.option, "xmlpath", None):
        return
    config.option.xmlpath = os.path.join(directory, f"junit-{session}.xml")


def _lines(item):
    try:
        source, start = inspect.getsourcelines(getattr(item, "obj", None))
        return [start, start + len(source) - 1]
    except (TypeError, OSError):
        line = item.location[1]
        return [line + 1, line + 1] if line is not None else None


def pytest_collection_modifyitems(session, config, items):
    records = getattr(config, _KEY, None)
    if records is None:
        return
    for item in items:
        records["tests"][item.nodeid] = {"nodeid": item.nodeid, "path": str(getattr(item, "path", item.fspath)),
                                         "name": getattr(item, "originalname", None) or item.name,
                                         "lines": _lines(item), "outcome": "not run", "exception": ""}


def pytest_collectreport(report):
    if report.failed:
        records = getattr(_CONFIG.get("config"), _KEY, None)
        if records is not None:
            records["collect_errors"].append({"nodeid": report.nodeid, "text": str(report.longreprtext)[-2000:]})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    records = getattr(item.config, _KEY, None)
    if records is None or item.nodeid not in records["tests"]:
        return
    entry = records["tests"][item.nodeid]
    if report.failed:
        if entry["outcome"] in ("not run", "passed", "skipped"):
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["exception"] = call.excinfo.typename if call.excinfo is not None else ""
    elif report.skipped and entry["outcome"] == "not run":
        entry["outcome"] = "skipped"
    elif report.when == "call" and report.passed and entry["outcome"] == "not run":
        entry["outcome"] = "passed"


def pytest_sessionfinish(session):
    records = getattr(session.config, _KEY, None)
    if records is None:
        return
    with open(records["path"], "w", encoding="utf-8") as out:
        json.dump({"tests": list(records["tests"].values()), "collect_errors": records["collect_errors"]}, out)
