"""contrail-api-cli on Python 3.11 (`mirrorlab.apicli`): its generators' pre-PEP 479 ending,
and the tool itself starting (in a subprocess: it monkey-patches socket and ssl with gevent,
which this test session must not get). The e2e test runs it against a lab."""
import subprocess
import sys

import pytest

from mirrorlab.apicli import stopping_quietly


def test_a_generator_raising_stop_iteration_ends_with_what_it_yielded():
    def first_two(values):
        for index, value in enumerate(values):
            if index == 2:
                raise StopIteration
            yield value

    with pytest.raises(RuntimeError, match="generator raised StopIteration"):
        list(first_two("abc"))
    quiet = stopping_quietly(first_two)
    assert list(quiet("abc")) == ["a", "b"] and quiet.__name__ == "first_two"


def test_other_runtime_errors_still_raise():
    def failing():
        yield 1
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        list(stopping_quietly(failing)())


def test_the_tool_starts_on_this_python_and_offers_its_commands(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mirrorlab.apicli", "--config-dir", str(tmp_path),
                          "--help"], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.startswith("usage: contrail-api-cli")
    assert all(command in run.stdout for command in ("ls", "cat", "shell", "tree"))
