# Sourced by the scripts: make .venv (from scratch if missing) with fastflow
# installed in development mode, every extra the tests use, and its Cython
# extensions built in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
# Every extra, so that no test of an integration skips (CI runs exactly this).
EXTRAS="test,bench,kafka,kafka-avro,kafka-schema-registry,ray,tracing"
if [ ! -x .venv/bin/python ]; then
    echo "setting up .venv (first run only)..." >&2
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
# (Re)install whenever pyproject.toml changed since the last install: a dependency or an
# extra joined. setup.py reads its SPDX licence string, which needs setuptools 77.
if ! cmp -s pyproject.toml .venv/.installed-pyproject.toml; then
    .venv/bin/python -m pip install -q "cython>=3.0" "setuptools>=77" ruff
    .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
    cp pyproject.toml .venv/.installed-pyproject.toml
fi
# The browser tests (tests/test_dashboard.py) drive Debian's Chromium with its chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing chromium and chromium-driver for the browser tests..." >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
        >/dev/null
fi
# Rebuild whatever extension changed since the last build (a no-op otherwise).
.venv/bin/python setup.py -q build_ext --inplace >/dev/null 2>.venv/build.log || {
    cat .venv/build.log >&2
    echo "building the Cython extensions failed" >&2
    exit 1
}
