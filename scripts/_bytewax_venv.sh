# Sourced after _venv.sh: make .bytewax-venv (once; reused after) with Bytewax 0.21.1 from
# PyPI, the reference the parity tests compare with, and point FASTFLOW_BYTEWAX_PYTHON at it.
BYTEWAX_VERSION=0.21.1
bytewax_ok() {
    [ -x .bytewax-venv/bin/python ] && [ "$(.bytewax-venv/bin/python -c \
        'import bytewax.run, importlib.metadata as m; print(m.version("bytewax"))' 2>/dev/null)" \
        = "$BYTEWAX_VERSION" ]
}
if ! bytewax_ok; then
    echo "setting up .bytewax-venv with Bytewax $BYTEWAX_VERSION (first run only)..." >&2
    rm -rf .bytewax-venv
    "${PYTHON:-python3}" -m venv .bytewax-venv
    .bytewax-venv/bin/python -m pip install -q --upgrade pip
    .bytewax-venv/bin/python -m pip install -q "bytewax==$BYTEWAX_VERSION"
    bytewax_ok || { echo "installing Bytewax $BYTEWAX_VERSION in .bytewax-venv failed" >&2; exit 1; }
fi
export FASTFLOW_BYTEWAX_PYTHON="$PWD/.bytewax-venv/bin/python"
