"""The two tiers (tests/conftest.py): a test is slow exactly when it requests the `subprocesses`
fixture, directly or through other fixtures; a fast test that starts a process fails, naming
itself, so `make check` (the fast tier) cannot quietly grow slow."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tools.sandbox import ROOT

EXAMPLE = """
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def built(subprocesses):
    return "a project that has run"


@pytest.fixture
def copy(built):
    return built


def test_asks_itself(subprocesses):
    pass


def test_asks_through_two_fixtures(copy):
    pass


def test_plain(tmp_path):
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0


def test_starts_python():
    subprocess.run([sys.executable, "-c", "pass"])
"""


def outcomes(pytester, *args):
    passed, _, failed = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:xdist", *args).listoutcomes()
    return sorted(r.nodeid.split("::")[1] for r in passed), {r.nodeid.split("::")[1]: r.longreprtext for r in failed}


def test_only_tests_that_request_subprocesses_through_any_fixture_are_slow_and_only_they_start_processes(pytester):
    pytester.makeini((ROOT / "pytest.ini").read_text())  # --strict-markers: `slow` must be declared
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems, pytest_runtest_protocol, "
                          "subprocesses  # noqa: F401")
    pytester.makepyfile(test_example=EXAMPLE)
    assert outcomes(pytester, "-m", "slow") == (["test_asks_itself", "test_asks_through_two_fixtures"], {})
    passed, failed = outcomes(pytester, "-m", "not slow")
    assert passed == ["test_plain"] and list(failed) == ["test_starts_python"]
    assert (f"AssertionError: test_example.py::test_starts_python starts '{Path(sys.executable).name}' as "
            "a process: request the `subprocesses` fixture (tests/conftest.py), which marks it slow") in failed[
        "test_starts_python"]


def test_this_fast_test_may_run_git_but_not_python(request):
    assert subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.startswith("git version")
    with pytest.raises(AssertionError, match=f"^{request.node.nodeid} starts 'python"):
        subprocess.run([sys.executable, "-c", "pass"])


def test_no_test_is_marked_slow_by_hand():
    """The mark comes from the fixtures a test uses (conftest), never from a decorator."""
    by_hand = [path.name for path in sorted((ROOT / "tests").glob("*.py"))
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Attribute) and node.attr == "slow"
               and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
               and path.name != "conftest.py"]
    assert by_hand == []
