"""Options shared by every test directory."""
from __future__ import annotations


def pytest_addoption(parser):
    """--require-e2e: end-to-end tests that cannot run here fail instead of being skipped."""
    parser.addoption("--require-e2e", action="store_true",
                     help="fail, instead of skipping, end-to-end tests this machine cannot run "
                          "(no root, Open vSwitch, tshark or Chromium); on when CI is set")
