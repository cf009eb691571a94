"""The installed names: everything lives under `mirrorlab`, never under the generic top-level
names of the folders (`lab`, `controller`), and the shipped topologies are package data."""
import re
from pathlib import Path

import pytest

from mirrorlab import topofile
from mirrorlab.topology import TopologyError

REPO = Path(__file__).resolve().parents[2]
GENERIC_IMPORT = re.compile(r"^\s*(from|import)\s+(lab|controller|topologies)\b|\"-m\", \"(lab|controller)\.",
                            re.M)


def test_no_source_imports_the_folders_by_their_generic_names():
    offenders = [f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}"
                 for folder in ("lab", "controller", "tests", "bench", "scripts", "examples")
                 for path in (REPO / folder).rglob("*.py") if path.exists()
                 for text in [path.read_text()] for match in GENERIC_IMPORT.finditer(text)]
    assert offenders == []


def test_shipped_topologies_are_found_by_name_and_load():
    shipped = topofile.shipped()
    assert {"default", "minimal"} <= set(shipped)
    assert topofile.locate("default") == shipped["default"]
    assert topofile.load(topofile.locate("minimal")).name


def test_a_path_is_taken_as_a_path_and_an_unknown_name_is_refused_with_the_choices():
    assert topofile.locate("some/dir/lab.yaml") == Path("some/dir/lab.yaml")
    with pytest.raises(TopologyError) as err:
        topofile.locate("nosuchlab")
    assert "not a shipped topology" in err.value.problems[0] and "default" in err.value.problems[0]
