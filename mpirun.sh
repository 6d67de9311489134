#!/usr/bin/env bash
# Launch a Python script on P MPI ranks with the MPI that belongs to this environment.
#
#   ./mpirun.sh -n P [--hostfile F] [--timeout S] [--mpiexec-arg A ...] python script.py args...
#
# See --help. The job's exit status is mpiexec's (a rank's sys.exit(3) gives 3).
set -euo pipefail

usage() {
    cat <<'EOT'
Usage: ./mpirun.sh -n P [--hostfile F] [--timeout S] [--mpiexec-arg A ...] python script.py [args...]

Runs `python -m mpi4py script.py args...` on P ranks, so that an uncaught exception
on any rank aborts every rank instead of leaving the others hanging.

  -n, -np P        number of ranks (required)
  --hostfile F     hosts to run on (MPICH: -f F, Open MPI: --hostfile F)
  --timeout S      kill the whole job after S seconds (MPICH: MPIEXEC_TIMEOUT, Open MPI: --timeout)
  -h, --help       this text
  --mpiexec-arg A  pass A to mpiexec unchanged (repeat for each word)

The command may be `python script.py`, `python -m module` or `python -c code`;
"python"/"python3" means the project's .venv interpreter when .venv exists.
Any other command (e.g. `hostname`) runs as it is.

Environment: OMP_NUM_THREADS, NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS default to max(1, cores // P); PYTHONUNBUFFERED=1.
MPIEXEC overrides which mpiexec is used.
EOT
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
nprocs="" hostfile="" timeout="" passthrough=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -n|-np) nprocs="${2:?-n needs a number}"; shift 2 ;;
        --hostfile|-f) hostfile="${2:?--hostfile needs a file}"; shift 2 ;;
        --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
        --mpiexec-arg) passthrough+=("${2:?--mpiexec-arg needs a value}"); shift 2 ;;
        -*) echo "mpirun.sh: unknown option '$1' (pass mpiexec options with --mpiexec-arg)" >&2
            exit 2 ;;
        *) break ;;
    esac
done
if [[ -z "$nprocs" || $# -eq 0 ]]; then
    usage >&2
    exit 2
fi
if ! [[ "$nprocs" =~ ^[1-9][0-9]*$ ]]; then
    echo "mpirun.sh: -n must be a positive integer, got '$nprocs'" >&2
    exit 2
fi

# The interpreter: "python" means the project's .venv when it exists.
cmd=("$@")
python=""
case "${cmd[0]}" in
    python|python3)
        if [[ -x "$here/.venv/bin/python" ]]; then
            python="$here/.venv/bin/python"
        else
            python=$(command -v "${cmd[0]}" || true)
        fi ;;
    */python*|python3.*) python=$(command -v "${cmd[0]}" || true) ;;
esac
[[ -n "$python" ]] && cmd[0]="$python"

# The mpiexec that belongs to that environment, else the one on PATH.
mpiexec="${MPIEXEC:-}"
if [[ -z "$mpiexec" ]]; then
    for candidate in "$here/.venv/bin/mpiexec" "${python:+$(dirname "$python")/mpiexec}"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then mpiexec="$candidate"; break; fi
    done
fi
if [[ -z "$mpiexec" && -n "$python" ]]; then
    prefix=$("$python" -c 'import sys; print(sys.prefix)' 2>/dev/null || true)
    [[ -x "$prefix/bin/mpiexec" ]] && mpiexec="$prefix/bin/mpiexec"
fi
[[ -z "$mpiexec" ]] && mpiexec=$(command -v mpiexec || true)
if [[ -z "$mpiexec" ]]; then
    echo "mpirun.sh: no mpiexec found. Install the embedded MPI into this environment:" >&2
    echo "    ${python:-python3} -m pip install mpi4py mpich" >&2
    echo "or run ./setup.sh, which creates .venv with everything." >&2
    exit 127
fi

# One thread pool per rank: share the cores.
cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
threads=$(( cores / nprocs )); (( threads < 1 )) && threads=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}"
export NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-$threads}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$threads}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-$threads}"
export PYTHONUNBUFFERED=1

# `python script.py` -> `python -m mpi4py script.py`: an uncaught exception on any rank
# then calls MPI_Abort, which ends every rank (plain python leaves the others hanging).
if [[ -n "$python" && "${cmd[*]:1:2}" != "-m mpi4py" ]]; then
    cmd=("${cmd[0]}" -m mpi4py "${cmd[@]:1}")
fi

args=(-n "$nprocs")
hydra=""
if "$mpiexec" --version 2>&1 | grep -qiE "open mpi|openrte"; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    args+=(--oversubscribe)
    [[ -n "$hostfile" ]] && args+=(--hostfile "$hostfile")
    [[ -n "$timeout" ]] && args+=(--timeout "$timeout")
else
    # MPICH (hydra) and its derivatives.
    hydra=1
    [[ -n "$hostfile" ]] && args+=(-f "$hostfile")
    [[ -n "$timeout" ]] && export MPIEXEC_TIMEOUT="$timeout"
fi

# MPICH: hydra reports a rank killed by a signal by its PID and host only; collective writes
# the job's "pid host rank" lines to COLLECTIVE_RANKS_FILE at col.init(), and the filter below
# adds the rank to hydra's line (stdout only passes through it, line by line).
ranks_file=""
if [[ -n "$hydra" ]]; then
    ranks_file=$(mktemp "${TMPDIR:-/tmp}/collective-ranks.XXXXXX")
    export COLLECTIVE_RANKS_FILE="$ranks_file"
    trap 'rm -f "$ranks_file"' EXIT
fi
# NOTE: mawk (Debian's default awk) reads a pipe in blocks: a long job's output would appear
# only at its end; -W interactive makes it read line by line (gawk and BWK awk already do).
awk_cmd=(awk)
if awk -W version 2>&1 | grep -q mawk; then awk_cmd=(awk -W interactive); fi
name_ranks() {
    if [[ -z "$ranks_file" ]]; then cat; return; fi
    "${awk_cmd[@]}" -v map="$ranks_file" '
        $2 == "PID" && $4 == "RUNNING" && $5 == "AT" {
            while ((getline line < map) > 0) { split(line, f, " "); rank[f[1] " " f[2]] = f[3] }
            close(map)
            key = $3 " " $6
            if (key in rank) sub(/PID /, "RANK " rank[key] ", PID ")
        }
        { print; fflush() }'
}

# NOTE: with a timeout, hydra sometimes exits 0 after killing the job (about 1 run in 6 on the
# 2-core box, "demux engine error waiting for event"): a job that ran the whole allowed time
# and "succeeded" was in fact killed, so say so and exit 124, as timeout(1) does.
start=$(date +%s%N)
set +e
"$mpiexec" "${args[@]}" ${passthrough[@]+"${passthrough[@]}"} "${cmd[@]}" | name_ranks
status=${PIPESTATUS[0]}
set -e
if [[ -z "$timeout" ]]; then
    exit "$status"
fi
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
if (( status == 0 && elapsed_ms >= ${timeout%.*} * 1000 )); then
    echo "mpirun.sh: the job reached --timeout ${timeout} s and was killed" >&2
    status=124
fi
exit "$status"
