# Sourced by the scripts: make .venv (from scratch if missing) with fastflow
# installed in development mode and its Cython extensions built in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setting up .venv (first run only)..." >&2
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "cython>=3.0" "setuptools>=77" ruff
    .venv/bin/python -m pip install -q -e ".[test,bench,kafka,ray]"
fi
# A .venv made before a dependency or extra joined lacks it (mypy, Ray, typing_extensions):
# install them again.
if [ ! -x .venv/bin/mypy ] || [ ! -x .venv/bin/ray ] \
    || ! .venv/bin/python -c "import typing_extensions" 2>/dev/null; then
    .venv/bin/python -m pip install -q -e ".[test,bench,kafka,ray]"
fi
# setup.py reads pyproject.toml's SPDX licence string, which needs setuptools 77.
.venv/bin/python -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' \
    || .venv/bin/python -m pip install -q "setuptools>=77"
# Rebuild whatever extension changed since the last build (a no-op otherwise).
.venv/bin/python setup.py -q build_ext --inplace >/dev/null 2>.venv/build.log || {
    cat .venv/build.log >&2
    echo "building the Cython extensions failed" >&2
    exit 1
}
