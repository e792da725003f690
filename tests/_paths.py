"""Where the repository's directories are, for tests in any folder of tests/."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
"""The tests/ folder (fixtures/, flows/ and the helper modules are here)."""
ROOT = TESTS.parent
"""The repository's root (examples/, docs/, bench/, dist/)."""
