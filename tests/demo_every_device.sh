#!/bin/sh
# `seqmix demo` at a small size on every device (or the comma-separated ids in
# $SEQMIX_TEST_DEVICES), f32 and f16: each run checks its outputs against the
# same run on the CPU and exits 1 beyond the tolerance.
set -eu
seqmix="$1"
if [ -n "${SEQMIX_TEST_DEVICES:-}" ]; then
  ids=$(echo "$SEQMIX_TEST_DEVICES" | tr ',' ' ')
else
  ids=$("$seqmix" devices | awk '{ id = ($1 == "*") ? $2 : $1 } id ~ /^(cpu|opencl:[0-9]+|vulkan:[0-9]+)$/ { print id }')
fi
[ -n "$ids" ] || { echo "no devices listed" >&2; exit 1; }
for id in $ids; do
  for dtype in f32 f16; do
    echo "== seqmix demo --device $id --dtype $dtype"
    "$seqmix" demo --device "$id" --dtype "$dtype" --prompt 96 --decode 8 --heads 4 \
      --head-dim 32 --state 16 --seed 7
  done
done
