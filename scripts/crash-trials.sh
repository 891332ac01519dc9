#!/usr/bin/env bash
# kill -9 trials of an ingest node under load (crates/cli/tests/ingest_crash.rs), N of them
# (default 20), with the tally: every acked event must be in the lake exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-20}"
NEWSREC_CRASH_TRIALS="$trials" cargo test -p newsrec-cli --test ingest_crash -- --nocapture 2>&1 \
  | tee /dev/stderr | grep -c '^crash trial .*: ok' \
  | { read -r ok; echo "tally: $ok of $trials trials kept every acked event exactly once"; [ "$ok" = "$trials" ]; }
