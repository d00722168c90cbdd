#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (CPU) reproducibly and cache it:
#   $SPECFAIR_HOME/llamacpp/<llama-cpp-python version>/bin/llama-server
# The llama.cpp sources are those vendored in the pinned llama-cpp-python sdist from PyPI
# (the only network this needs is PyPI, plus apt-get for missing build tools).
# Idempotent: a second run with the binary present does nothing.
# Env: SPECFAIR_HOME (default ~/.cache/specfair), LLAMA_CPP_PYTHON_VERSION (pin below),
#      PYTHON (a python with pip; default .venv/bin/python, else python3),
#      JOBS (default: number of cores), LLAMACPP_CPU (auto|portable, default auto: the x86
#      instruction sets /proc/cpuinfo lists, AVX-512 included; portable: ggml's defaults, AVX2),
#      LLAMACPP_AMX (OFF|ON, default OFF: AMX tiles fault with SIGILL in VMs that list the
#      cpuid flags without enabling the state, e.g. this project's firecracker machines).
# Takes ~17 min on 2 busy cores under `nice` (see README), a few minutes on a larger machine.
set -euo pipefail
# (run by `specfair backends install llamacpp`, or scripts/install_llamacpp.sh)

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
HOME_DIR=${SPECFAIR_HOME:-$HOME/.cache/specfair}
PREFIX="$HOME_DIR/llamacpp/$VERSION"
BIN="$PREFIX/bin/llama-server"
CPU=${LLAMACPP_CPU:-auto}
AMX=${LLAMACPP_AMX:-OFF}
JOBS=${JOBS:-$(nproc)}
# ggml's instruction-set options (never -march=native: it would turn AMX on where cpuid says so)
cpu_flags=(-DGGML_NATIVE=OFF)
if [ "$CPU" = auto ] && [ "$(uname -m)" = x86_64 ] && [ -r /proc/cpuinfo ]; then
  have() { grep -m1 '^flags' /proc/cpuinfo | grep -qw "$1"; }
  for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 \
              avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 \
              avx_vnni:AVX_VNNI; do
    if have "${pair%%:*}"; then cpu_flags+=("-DGGML_${pair#*:}=ON"); else cpu_flags+=("-DGGML_${pair#*:}=OFF"); fi
  done
  if [ "$AMX" = ON ] && have amx_int8; then
    cpu_flags+=(-DGGML_AMX_TILE=ON -DGGML_AMX_INT8=ON)
  fi
fi
CONFIG="llama-cpp-python $VERSION, ${cpu_flags[*]}"
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
fi

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1 \
   && [ "$(cat "$PREFIX/BUILD_CONFIG" 2>/dev/null)" = "$CONFIG" ]; then
  echo "llama-server already built: $BIN"
  exit 0
fi

need=()
for tool in cmake gcc g++ make; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing build tools (missing: ${need[*]})"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q cmake build-essential
fi

work="$HOME_DIR/llamacpp/build-$VERSION"
mkdir -p "$work"
sdist=$(ls "$work"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)
if [ -z "$sdist" ]; then
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$work" "llama-cpp-python==$VERSION"
  sdist=$(ls "$work"/llama_cpp_python-"$VERSION".tar.gz)
fi
src="$work/src"
if [ ! -f "$src/CMakeLists.txt" ]; then
  rm -rf "$src" "$work/extract"
  mkdir -p "$work/extract"
  tar -xzf "$sdist" -C "$work/extract"
  mv "$work/extract/llama_cpp_python-$VERSION/vendor/llama.cpp" "$src"
  rm -rf "$work/extract"
fi

start=$(date +%s)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF "${cpu_flags[@]}" \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" >"$work/cmake.log" 2>&1 || {
  tail -30 "$work/cmake.log"; exit 1; }
cmake --build "$work/build" --target llama-server -j "$JOBS"
mkdir -p "$PREFIX/bin"
cp "$work/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
"$BIN" --version >"$PREFIX/VERSION.txt" 2>&1 || true
echo "$CONFIG; built in $(( $(date +%s) - start )) s" >>"$PREFIX/VERSION.txt"
echo "$CONFIG" >"$PREFIX/BUILD_CONFIG"
cat "$PREFIX/VERSION.txt"
echo "llama-server: $BIN"
