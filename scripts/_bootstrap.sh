# Sourced by scripts/dev and scripts/test (not run directly): make sure .venv exists and holds the
# project as pyproject.toml describes it. Needs only a Python >= 3.11 ($PYTHON, default python3).

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "tenantflow needs Python >= 3.11; '$PYTHON' is $("$PYTHON" -V 2>&1 || echo 'not installed')." >&2
    echo "Install one, or point PYTHON at it: PYTHON=/usr/bin/python3.12 $0" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "scripts: creating .venv with $("$PYTHON" -V)" >&2
    if ! "$PYTHON" -m venv .venv; then
        rm -rf .venv
        echo "'$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 1
    fi
fi

# Reinstall when pyproject.toml changed since the last install (the stamp holds its hash).
stamp=.venv/.tenantflow-installed
wanted="$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "scripts: installing tenantflow and its dependencies into .venv (the first time takes a few minutes)" >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install --quiet --progress-bar off -e '.[dev]'
    echo "$wanted" > "$stamp"
fi
