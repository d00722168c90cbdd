#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (CPU) reproducibly and cache it:
#   $SPECFAIR_HOME/llamacpp/<llama-cpp-python version>/bin/llama-server
# The llama.cpp sources are those vendored in the pinned llama-cpp-python sdist from PyPI
# (the only network this needs is PyPI, plus apt-get for missing build tools).
# Idempotent: a second run with the binary present does nothing.
# Env: SPECFAIR_HOME (default ~/.cache/specfair), LLAMA_CPP_PYTHON_VERSION (pin below),
#      PYTHON (a python with pip; default .venv/bin/python, else python3),
#      JOBS (default: number of cores), LLAMACPP_NATIVE (ON|OFF, default ON: -march=native;
#      OFF builds a portable binary, slower on AVX-512 machines).
# Takes ~25 min on 2 cores under `nice` (see README), a few minutes on a larger machine.
set -euo pipefail
# (run by `specfair backends install llamacpp`, or scripts/install_llamacpp.sh)

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
HOME_DIR=${SPECFAIR_HOME:-$HOME/.cache/specfair}
PREFIX="$HOME_DIR/llamacpp/$VERSION"
BIN="$PREFIX/bin/llama-server"
NATIVE=${LLAMACPP_NATIVE:-ON}
JOBS=${JOBS:-$(nproc)}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
fi

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
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
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE="$NATIVE" \
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
echo "llama-cpp-python $VERSION, GGML_NATIVE=$NATIVE, built in $(( $(date +%s) - start )) s" \
  >>"$PREFIX/VERSION.txt"
cat "$PREFIX/VERSION.txt"
echo "llama-server: $BIN"
