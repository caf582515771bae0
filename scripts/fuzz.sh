#!/usr/bin/env bash
# Runs every fuzz target of the workspace (each `<crate>/fuzz/fuzz_targets/<name>.rs`) for
# SECONDS each (default 30): `scripts/fuzz.sh [SECONDS]`.
#
# Each target starts from its committed seeds (`<crate>/fuzz/corpus/<name>/`, read, never
# written) and a scratch corpus in a temporary directory, which gets what the run finds and is
# removed afterwards. A failing input is kept in `<crate>/fuzz/artifacts/<name>/`, with the
# command that replays it. The script fails if any target fails, after running them all.
#
# cargo-fuzz needs nightly-only compiler flags; the stable toolchain is told to accept them
# with RUSTC_BOOTSTRAP=1 (no nightly toolchain is needed). Targets are built with the address
# sanitizer, cargo-fuzz's default, since the crates under test call into libc with raw
# pointers; SANITIZER=none (or another of cargo-fuzz's -s values) overrides it.
#
# Longer runs, e.g. an hour per target: scripts/fuzz.sh 3600. One target alone:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir runtime/fuzz layer_tar -- -max_total_time=600
# The targets that touch the file system (image archives, layers) must run as root, as the
# runtime does: they set owners and make device nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] (seconds per target, a whole number)" >&2; exit 2 ;;
esac
sanitizer="${SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
# One target directory for every fuzz crate: their dependencies are built once, not per crate.
target_dir="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

failed=()
ran=0
for fuzz_dir in */fuzz; do
  [ -f "$fuzz_dir/Cargo.toml" ] || continue
  for source in "$fuzz_dir"/fuzz_targets/*.rs; do
    [ -e "$source" ] || continue
    target="$(basename "$source" .rs)"
    scratch="$(mktemp -d)"
    corpora=("$scratch")
    if [ -d "$fuzz_dir/corpus/$target" ]; then
      corpora+=("$fuzz_dir/corpus/$target")
    fi
    echo "== $fuzz_dir $target: ${seconds}s"
    # libFuzzer reports every input that reaches new code: kept in a log, shown in full
    # only when the target fails (the summary line otherwise).
    log="$scratch.log"
    if cargo fuzz run -s "$sanitizer" --target-dir "$target_dir" --fuzz-dir "$fuzz_dir" "$target" "${corpora[@]}" -- \
      -max_total_time="$seconds" -timeout=60 >"$log" 2>&1; then
      grep -E '^(Done|#[0-9]+ +DONE)' "$log" | tail -1 || true
    else
      cat "$log"
      failed+=("$fuzz_dir $target")
    fi
    rm -f "$log"
    rm -rf "$scratch"
    ran=$((ran + 1))
  done
done

if [ "$ran" -eq 0 ]; then
  echo "no fuzz targets found (*/fuzz/fuzz_targets/*.rs)" >&2
  exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets that failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all $ran fuzz targets ran ${seconds}s without a failure"
