# Sourced by scripts/gpu_check.sh and scripts/gpu_sweep.sh (run from the repository root): SpikingJelly from the
# wheels in .whl/ (fill it with scripts/fetch_gpu_wheels.sh) on a GPU machine that has torch, triton and cupy
# but neither SpikingJelly nor a package index.
#
# sj_wheels_install PY DIR LINE: install line 2 (SpikingJelly 2.0.0 and the pure-Python packages it imports,
# loguru and SciencePlots) or line 014 (SpikingJelly 0.0.0.0.14) into the --target folder DIR, for PYTHONPATH.
# Non-zero if the wheels are missing (with a message on stderr) or pip fails.
sj_wheels_install() {
    local py=$1 dir=$2 line=$3 wheels
    case "$line" in
        2) wheels=(.whl/spikingjelly-2.0.0-*.whl .whl/loguru-*.whl .whl/[Ss]cience[Pp]lots-*.whl) ;;
        014) wheels=(.whl/spikingjelly-0.0.0.0.14-*.whl) ;;
        *) echo "sj_wheels_install: LINE must be 2 or 014, got $line" >&2; return 2 ;;
    esac
    if ! ls "${wheels[@]}" >/dev/null 2>&1; then
        echo "no SpikingJelly $line wheels in .whl/: run scripts/fetch_gpu_wheels.sh on a machine with PyPI and carry .whl" >&2
        return 1
    fi
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$dir" "${wheels[@]}"
}
