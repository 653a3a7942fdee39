#!/usr/bin/env bash
# The C extension built with AddressSanitizer and UndefinedBehaviorSanitizer (clang, with
# libFuzzer's coverage hooks), then under it: the native tests, the fuzzer's regression
# cases, and each fuzz target of tests/fuzz/fuzz_inputs.py for SECONDS (default 30).
# A memory error, undefined behaviour, an unexpected exception or a hang stops it with a
# non-zero status and the input written as crash-*/timeout-* in build/sanitized/.
#
#   bash tests/fuzz/sanitized.sh [SECONDS]        (make sanitize FUZZ_SECONDS=...)
# FUZZ_SEED (default 1) fixes libFuzzer's seed, so that CI explores the same way each
# time; longer runs by hand should vary it.
set -euo pipefail
seconds=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cc=${CC:-$(command -v clang-14 || command -v clang || true)}
[ -n "$cc" ] || { echo "sanitize: needs clang (apt-get install clang-14)" >&2; exit 2; }
work=$root/build/sanitized
rm -rf "$work" && mkdir -p "$work"
# A copy of the package, so that the sanitized extension is the one imported.
cp -r "$root/pipeline" "$root/tests" "$root/schemas" "$root/setup.py" "$work/"
rm -f "$work"/pipeline/_native*.so
cd "$work"
flags="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
CC=$cc LDSHARED="$cc -shared" CFLAGS="$flags" \
  "$python" setup.py -q build_ext --inplace 2>&1 | grep -v "^warning\|^$" || true
ls pipeline/_native*.so >/dev/null
# atheris's own ASan runtime with libFuzzer in it: a separate ASan runtime would take
# the coverage callbacks, and the fuzzer would see no coverage of the C code.
export LD_PRELOAD
LD_PRELOAD=$("$python" -c "import atheris; print(atheris.path())")/asan_with_fuzzer.so
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONMALLOC=malloc AUDITPIPE_REQUIRE_NATIVE=1 PYTHONPATH=$work
"$python" -c "import pipeline, pipeline.native as n; assert pipeline.__file__.startswith('$work') and n.available()"
"$python" -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/test_native.py tests/stages/test_decode.py tests/schema/test_codec.py tests/fuzz/test_regressions.py
for target in decoder auditd falco jsonl; do
  echo "fuzz $target for ${seconds}s"
  "$python" -m tests.fuzz.fuzz_inputs "$target" -max_total_time="$seconds" -timeout=10 \
    -seed="${FUZZ_SEED:-1}" \
    -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss|#.*DONE)|ERROR|SUMMARY|Error|crash-|timeout-" || true
  if compgen -G "crash-*" >/dev/null || compgen -G "timeout-*" >/dev/null; then
    echo "fuzz $target: a finding, written to $work (see above)" >&2
    exit 1
  fi
done
echo "sanitize: no finding"
