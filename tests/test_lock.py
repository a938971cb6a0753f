"""The lock files that `make demo`, `make test` and CI install: every requirement in the ranges
is pinned there, inside its range, and the runtime lock agrees with the test lock."""
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        assert m, f"{path.name}: not an exact pin: {line!r}"
        pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def _requirements(path: Path) -> list[Requirement]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            out += _requirements(path.parent / line[3:].strip())
            continue
        out.append(Requirement(line))
    return out


@pytest.mark.parametrize("ranges, lock", [("requirements.txt", "requirements.lock"),
                                          ("requirements-dev.txt", "requirements-dev.lock")])
def test_lock_pins_every_requirement_inside_its_range(ranges, lock):
    pins = _pins(REPO / lock)
    for req in _requirements(REPO / ranges):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} does not pin {req.name} (run `make lock`)"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{lock}: {req.name}=={pins[name]} is outside {req} (run `make lock`)"
    assert {"pip", "setuptools"} <= set(pins)  # the installer itself is pinned too


def test_runtime_lock_is_the_test_lock_without_the_test_tools():
    run, dev = _pins(REPO / "requirements.lock"), _pins(REPO / "requirements-dev.lock")
    assert set(run) < set(dev)
    assert {k: v for k, v in dev.items() if k in run} == run
    assert "torch" in dev and "torch" not in run and "pytest" not in run
