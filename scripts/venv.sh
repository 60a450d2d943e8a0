# Sourced by the scripts in this folder: make .venv hold Pledge (editable) and, when named,
# one of its dependency groups from pyproject.toml. Needs only Python 3.11+ on the PATH.
ensure_venv() {
    local group="${1:-}"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Pledge needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)." >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    # pip learned dependency groups (--group) in 25.1.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
    if [ -n "$group" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e . --group "$group"
    else
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
    fi
}
