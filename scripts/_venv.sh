# Sourced by the scripts: make .venv (from scratch if missing) with fastflow
# installed in development mode and its Cython extensions built in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setting up .venv (first run only)..." >&2
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "cython>=3.0" "setuptools>=64" ruff
    .venv/bin/python -m pip install -q -e ".[test,bench,kafka,kafka-schema-registry,ray]"
fi
# A .venv made before an extra joined lacks it (mypy, Ray, the Schema Registry's
# serializers): install the extras again.
serde='import fastavro, confluent_kafka.schema_registry.avro, jsonschema, google.protobuf'
if [ ! -x .venv/bin/mypy ] || [ ! -x .venv/bin/ray ] || ! .venv/bin/python -c "$serde" 2>/dev/null; then
    .venv/bin/python -m pip install -q -e ".[test,bench,kafka,kafka-schema-registry,ray]"
fi
# Rebuild whatever extension changed since the last build (a no-op otherwise).
.venv/bin/python setup.py -q build_ext --inplace >/dev/null 2>.venv/build.log || {
    cat .venv/build.log >&2
    echo "building the Cython extensions failed" >&2
    exit 1
}
