#!/usr/bin/env bash
# Developer entry point: installs what seqmix needs on Debian/Ubuntu, builds,
# runs the main job or the tests.
#   tools/dev.sh run    install, build, `seqmix demo` on the default device (it checks itself)
#   tools/dev.sh test   install, build, the whole suite with cpu, opencl and vulkan required,
#                       the Vulkan validation layer on, then the sanitizer build's suite
#   tools/dev.sh ci     what CI runs: test, then rusticl, oclgrind and arm64, each stage timed
#   tools/dev.sh deps | build | asan | rusticl | oclgrind | arm64   the single steps
#     rusticl   the OpenCL suites on Mesa rusticl (llvmpipe), which must be listed
#     oclgrind  every OpenCL kernel on small shapes under oclgrind; any report fails
#     arm64     cross build for aarch64 (CPU only), its suites under qemu-user: NEON, then scalar
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential meson ninja-build pkg-config python3
  check
  ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo
  libvulkan-dev vulkan-validationlayers glslang-tools mesa-vulkan-drivers vulkan-tools
  libkissfft-dev libvkfft-dev glslang-dev
)

# install PACKAGE...: apt-get install of those not installed yet.
install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

deps() { install "${PACKAGES[@]}"; }

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
  build/seqmix demo
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

# The OpenCL suites again on Mesa rusticl, a second OpenCL implementation:
# SEQMIX_TEST_DEVICES=opencl/rusticl makes every suite exit 1 when no device's
# driver names rusticl (tests/helpers.c), so a missing rusticl fails the stage.
rusticl() {
  deps
  install mesa-opencl-icd
  build
  RUSTICL_ENABLE=llvmpipe SEQMIX_TEST_DEVICES=opencl/rusticl SEQMIX_REQUIRE_BACKENDS=cpu,opencl \
    meson test -C build --print-errorlogs --num-processes 1 api conv1d attention ssm convmix backends
}

# Every OpenCL kernel once under oclgrind (its runtime preloaded in place of
# the ICD loader's, so opencl:0 is the simulator) on the small shapes of
# tools/ci/kernel_smoke.c, outputs compared with the CPU path. oclgrind exits 0
# whatever it finds: any line in its log fails, and so does a kernel of cl/
# that never ran (its --inst-counts report names each kernel launched).
oclgrind_stage() {
  deps
  install oclgrind
  build
  cc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude tools/ci/kernel_smoke.c -o build/kernel_smoke \
    -Lbuild -lseqmix -lm -Wl,-rpath,"$PWD/build"
  oclgrind build/seqmix devices | grep -q '^[* ]*opencl:0 .*Oclgrind' ||
    { echo "oclgrind: opencl:0 is not the Oclgrind simulator" >&2; return 1; }
  local log=build/oclgrind.log out=build/oclgrind.out
  rm -f "$log"
  SEQMIX_CACHE_DIR="$PWD/build/oclgrind-cache" \
    oclgrind --data-races --inst-counts --log "$log" build/kernel_smoke opencl:0 >"$out" 2>&1 ||
    { grep -v '^ \|^Instructions\|^$' "$out" | tail -40; echo "kernel_smoke failed under oclgrind" >&2; return 1; }
  grep -v '^ \|^Instructions\|^$' "$out" | tail -1
  if [ -s "$log" ]; then
    head -60 "$log"
    echo "oclgrind reported $(grep -c '^[A-Z]' "$log") problems (above, all in $log)" >&2
    return 1
  fi
  local kernel missing=0
  for kernel in $(grep -oh 'kernel void *[A-Za-z_0-9]*' cl/*.cl | awk '{print $3}' | sort -u); do
    if ! grep -q "^Instructions executed for kernel '$kernel':" "$out"; then
      echo "oclgrind: kernel $kernel (cl/) never ran" >&2
      missing=1
    fi
  done
  [ "$missing" -eq 0 ] || return 1
  echo "oclgrind: no reports; kernels run: $(grep -o "^Instructions executed for kernel '[A-Za-z_0-9]*'" "$out" |
    sed "s/.*'\(.*\)'/\1/" | sort | uniq -c | awk '{printf "%s x%s, ", $2, $1}')"
}

# The CPU path cross-built for aarch64 and its suites run under qemu-user
# (exe_wrapper of tools/cross/aarch64-linux-gnu.ini). SEQMIX_TEST_CPU_ISA=neon
# makes each suite check that the CPU device picked NEON (the -scalar-isa
# suites force and check scalar).
arm64() {
  install build-essential meson ninja-build pkg-config python3
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
    $sudo apt-get update -qq
  fi
  install gcc-aarch64-linux-gnu qemu-user-static check:arm64 libsubunit-dev:arm64 libkissfft-dev:arm64
  [ -f build-arm64/build.ninja ] ||
    meson setup build-arm64 --werror --cross-file tools/cross/aarch64-linux-gnu.ini \
      -Dopencl=disabled -Dvulkan=disabled
  ninja -C build-arm64 -j2
  qemu-aarch64-static -L / build-arm64/seqmix devices | grep -q '^\* cpu .* neon ' ||
    { echo "arm64: the CPU path did not pick NEON under qemu" >&2; return 1; }
  SEQMIX_TEST_CPU_ISA=neon meson test -C build-arm64 --print-errorlogs --num-processes 1 \
    --timeout-multiplier 2
}

# stage NAME FUNCTION: runs it in a subshell (so `set -e` stops only that stage),
# prints how long it took and records a failure; ci fails at the end if any did.
failed_stages=()
stage() {
  local start=$SECONDS rc=0
  echo "=== $1"
  ("$2") || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "=== $1: passed in $((SECONDS - start)) s"
  else
    echo "=== $1: FAILED (status $rc) after $((SECONDS - start)) s"
    failed_stages+=("$1")
  fi
}

ci() {
  local start=$SECONDS
  stage "suite (cpu, opencl on PoCL, vulkan on lavapipe)" test_suite
  stage "sanitizers" asan
  stage "rusticl" rusticl
  stage "oclgrind" oclgrind_stage
  stage "arm64 under qemu" arm64
  echo "=== ci: $((SECONDS - start)) s"
  if [ ${#failed_stages[@]} -ne 0 ]; then
    printf '=== failed: %s\n' "${failed_stages[@]}"
    return 1
  fi
}

case "${1:-}" in
  deps) deps ;;
  build) deps; build ;;
  run) run ;;
  test) test_suite; asan ;;
  asan) asan ;;
  rusticl) rusticl ;;
  oclgrind) oclgrind_stage ;;
  arm64) arm64 ;;
  ci) ci ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
