#!/usr/bin/env bash
# Set up (idempotently) a virtual environment in .venv with the project and its test and plot
# extras, the embedded MPI (mpich wheel) included. A second run only checks and returns.
#
#   ./setup.sh            create/refresh .venv
#   ./setup.sh --mnist    also fetch MNIST into the data cache ($DLSYS_DATA or ~/.cache/dlsys)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python=${PYTHON:-python3}
venv=.venv
stamp=$venv/.setup-stamp

if [[ ! -x $venv/bin/python ]]; then
    echo "setup: creating $venv with $($python --version 2>&1)"
    "$python" -m venv "$venv"
fi
# Re-install only when the project's metadata changed since the last successful install.
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    echo "setup: installing the project and its dependencies into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,plot]"
    touch "$stamp"
fi
for arg in "$@"; do
    case "$arg" in
        --mnist) "$venv/bin/python" -m dlsys.data fetch mnist ;;
        *) echo "setup: unknown option $arg" >&2; exit 2 ;;
    esac
done
