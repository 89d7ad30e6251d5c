#!/usr/bin/env bash
# Installs perf_analyzer into the virtual environment without Docker: the binary ships in the
# manylinux1 wheel of tritonclient 2.51.0 (newer wheels carry none; the PyPI "perf-analyzer"
# package is empty). It needs libb64 and libcudart, which the nvidia-pytriton wheel bundles
# under mangled names: they are linked under their real names beside the binary.
set -euo pipefail
venv="${1:-.venv}"
home="$venv/lib/perf_analyzer"
rm -rf "$home" && mkdir -p "$home"
"$venv/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
  "tritonclient==2.51.0" -d "$home"
unzip -q -o -j "$home"/tritonclient-2.51.0-*.whl "tritonclient-2.51.0.data/data/bin/perf_analyzer" -d "$home"
rm "$home"/tritonclient-2.51.0-*.whl
chmod +x "$home/perf_analyzer"
libs=$("$venv/bin/python" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parents[1] / "nvidia_pytriton.libs")')
ln -sf "$(ls "$libs"/libb64-*.so.0d)" "$home/libb64.so.0d"
ln -sf "$(ls "$libs"/libcudart-*.so.12*)" "$home/libcudart.so.12"
cat > "$venv/bin/perf_analyzer" <<WRAPPER
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$(cd "$home" && pwd)\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$(cd "$home" && pwd)/perf_analyzer" "\$@"
WRAPPER
chmod +x "$venv/bin/perf_analyzer"
if LD_LIBRARY_PATH="$home" ldd "$home/perf_analyzer" | grep "not found"; then
  echo "perf_analyzer: libraries missing" >&2; exit 1
fi
echo "installed $venv/bin/perf_analyzer"
