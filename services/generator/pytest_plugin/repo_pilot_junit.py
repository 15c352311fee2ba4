"""A pytest plugin the generator loads into a task's own test runs (`PYTEST_PLUGINS`, with this
folder on `PYTHONPATH`): every pytest session writes its JUnit report to a fresh file under
`$REPO_PILOT_JUNIT_DIR`, so a run_tests.sh that calls pytest twice leaves two reports and the
counts come from the reports, not from console text.

It imports nothing but pytest and the standard library: it runs inside the task's environment.
A task that asks for its own `--junitxml` keeps it (and its counts come from the console).
"""

import os
import uuid

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    directory = os.environ.get("REPO_PILOT_JUNIT_DIR")
    if not directory or hasattr(config, "workerinput"):  # xdist workers: the controller writes
        return
    if getattr(config.option, "xmlpath", None):
        return
    config.option.xmlpath = os.path.join(directory, f"junit-{os.getpid()}-{uuid.uuid4().hex}.xml")
