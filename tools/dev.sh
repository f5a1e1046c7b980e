#!/usr/bin/env bash
# Developer entry point: installs what seqmix needs on Debian/Ubuntu, builds,
# runs the main job or the tests.
#   tools/dev.sh run    install, build, `seqmix verify` + `seqmix bench` on the default device
#   tools/dev.sh test   install, build, the whole suite with cpu, opencl and vulkan required,
#                       the Vulkan validation layer on, then the sanitizer build's suite
#   tools/dev.sh deps | build | asan   the single steps
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential meson ninja-build pkg-config python3
  check
  ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo
  libvulkan-dev vulkan-validationlayers glslang-tools mesa-vulkan-drivers vulkan-tools
  libkissfft-dev libvkfft-dev glslang-dev
)

deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

# Vulkan tools and lavapipe need a runtime dir; the validation layer is on in tests.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

build() {
  [ -f build/build.ninja ] || meson setup build --werror
  ninja -C build -j2
}

run() {
  deps
  build
  build/seqmix devices
  build/seqmix verify
  build/seqmix bench
}

test_suite() {
  deps
  build
  SEQMIX_REQUIRE_BACKENDS="${SEQMIX_REQUIRE_BACKENDS:-cpu,opencl,vulkan}" \
    meson test -C build --print-errorlogs --num-processes 1
  build/seqmix verify --device all
}

asan() {
  deps
  [ -f build-asan/build.ninja ] ||
    meson setup build-asan --werror --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
  ninja -C build-asan -j2
  # The drivers leak at exit: tests/lsan.supp names them. UBSan findings fail.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  SEQMIX_REQUIRE_BACKENDS="${SEQMIX_REQUIRE_BACKENDS:-cpu,opencl,vulkan}" \
    meson test -C build-asan --print-errorlogs --num-processes 1 --timeout-multiplier 3
}

case "${1:-}" in
  deps) deps ;;
  build) deps; build ;;
  run) run ;;
  test) test_suite; asan ;;
  asan) asan ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
