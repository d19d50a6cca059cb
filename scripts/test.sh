#!/usr/bin/env bash
# The one test command (README "Tests"). Installs what a fresh machine lacks
# (redis-server, cargo-expand, clippy/rustfmt), then runs every check CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints the seconds since the start, so a slow CI run shows where
# the time went.
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "tools"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version
# The TLS test makes its certificates with openssl.
if ! command -v openssl >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
if ! cargo expand --version >/dev/null 2>&1; then
  # Unoptimized: it expands one small example, and builds in half the time.
  cargo install cargo-expand --locked --quiet --debug
fi
cargo expand --version

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "clippy without the redis feature (L1-only builds of the core and the facade)"
cargo clippy -p acgs-cache-core -p acgs-cache --no-default-features -- -D warnings

step "tests (unit, integration against real redis-server, trybuild, doc)"
test_log=$(mktemp)
cargo test --workspace --all-features 2>&1 | tee "$test_log"
# The core's unit tests again in its L1-only build, where L2 is the stub
# (tiers/no_l2.rs) and every engine branch that would use it is unreachable.
cargo test -p acgs-cache-core --no-default-features --lib 2>&1 | tee -a "$test_log"
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$test_log")
rm -f "$test_log"

step "runtimes: the process-default cache with Redis from many #[tokio::test] runtimes, 5 runs side by side and 5 one at a time"
for mode in "" "--test-threads=1"; do
  for run in 1 2 3 4 5; do
    # shellcheck disable=SC2086 # $mode is empty or one argument
    cargo test --quiet --workspace --all-features --test runtimes -- $mode 2>&1 | grep "^test result" \
      || { echo "tests/runtimes.rs failed (run $run ${mode:-side by side})"; exit 1; }
  done
done

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "packaging: cargo package of every published crate, each verified by building it from its package"
# Verification unpacks our crates from a temporary local registry into
# cargo's source cache, keyed by version only: a copy from an earlier run
# of the same version would be built instead of this one. Drop such copies.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/acgs-cache* "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/-*/acgs-cache*
# And their compiled copies: cargo takes a registry crate of a version it
# has built as unchanged, and would link the earlier run's API.
for dep_info in $(grep -l "registry/src/-" target/debug/deps/acgs_cache*.d 2>/dev/null); do
  hash=$(basename "$dep_info" .d); hash=${hash##*-}
  rm -rf target/debug/deps/*-"$hash".* target/debug/deps/*-"$hash" target/debug/.fingerprint/*-"$hash"
done
if ! packaged=$(cargo package --allow-dirty -p acgs-cache-grammar -p acgs-cache-macros -p acgs-cache-core -p acgs-cache 2>&1); then
  echo "$packaged"; echo "cargo package failed"; exit 1
fi
echo "$packaged" | grep -E "^ *(Packaged|Verifying) "

step "expansion snapshot (cargo expand)"
scripts/expansion.sh --check

step "quickstart, L1 only and with a redis-server of its own"
out=$(env -u ACGS_CACHE_REDIS_URL cargo run --quiet --example quickstart)
echo "$out" | tail -n 1
echo "$out" | grep -q "L1 only" || { echo "quickstart did not say it runs L1 only"; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --pidfile "/tmp/acgs-quickstart-$port.pid" >/dev/null
trap 'kill "$(cat /tmp/acgs-quickstart-'"$port"'.pid)" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
ACGS_CACHE_REDIS_URL="redis://127.0.0.1:$port" cargo run --quiet --example quickstart | tail -n 1
second=$(ACGS_CACHE_REDIS_URL="redis://127.0.0.1:$port" cargo run --quiet --example quickstart | tail -n 1)
echo "$second"
l2_hits=$(echo "$second" | sed -n 's/.*l2_hits=\([0-9]*\).*/\1/p')
[ "${l2_hits:-0}" -ge 1 ] || { echo "second quickstart run had no L2 hits"; exit 1; }

step "policy_governance, L1 only and with redis"
env -u ACGS_CACHE_REDIS_URL cargo run --quiet --example policy_governance | tail -n 1
ACGS_CACHE_REDIS_URL="redis://127.0.0.1:$port" cargo run --quiet --example policy_governance | tail -n 1

step "auth_service, L1 only and with redis"
env -u ACGS_CACHE_REDIS_URL cargo run --quiet --example auth_service | tail -n 1
ACGS_CACHE_REDIS_URL="redis://127.0.0.1:$port" cargo run --quiet --example auth_service | tail -n 1

step "cache_warming, L1 only and with redis (the first requests after warming must all hit)"
for url in "" "redis://127.0.0.1:$port"; do
  warm=$(ACGS_CACHE_REDIS_URL="$url" cargo run --quiet --example cache_warming | tail -n 1)
  echo "$warm"
  echo "$warm" | grep -q " misses_after=0$" || { echo "a warmed entry was not found"; exit 1; }
done

step "perf_report, quick and unoptimized (a smoke run: the figures come from --release, see docs/benchmarks.md)"
perf=$(cargo run --quiet --example perf_report -- --quick | grep '^perf: ')
echo "$perf"

step "L1 memory, quick and unoptimized (resident growth within 1.3x the L1 budget)"
memory=$(cargo run --quiet --example l1_memory -- --quick | grep '^l1_memory: ')
echo "$memory"
python3 -c "import sys,re; r=float(re.search(r'rss_vs_budget_max=([0-9.]+)', sys.argv[1]).group(1)); sys.exit(0 if r <= 1.3 else 1)" "$memory" || { echo "L1 holds more than 1.3x its budget"; exit 1; }

step "stampede report (one execution per process and per fleet)"
stampede=$(cargo run --quiet --example stampede | grep '^stampede: callers=')
echo "$stampede"
echo "$stampede" | grep -q "executions_local=1 executions_fleet=1" || { echo "stampede protection failed"; exit 1; }

step "chaos report, short phases (no call may fail; latency figures are informative here)"
chaos=$(cargo run --quiet --example chaos -- --seconds-per-phase 1 | grep '^chaos: calls=')
echo "$chaos"
echo "$chaos" | grep -q " failed=0 " || { echo "a cached call failed during the chaos run"; exit 1; }

step "multi_instance (two processes, a redis-server of its own; the invalidation must reach the other)"
# Whole outputs are kept so a failure shows every step the example printed.
multi=$(env -u ACGS_CACHE_REDIS_URL cargo run --quiet --example multi_instance) || { echo "$multi"; exit 1; }
echo "$multi" | tail -n 1
echo "$multi" | tail -n 1 | grep -q "invalidation_seen_by_other=true" || { echo "$multi"; echo "the invalidation did not reach the other instance"; exit 1; }
multi=$(cargo run --quiet --example multi_instance -- --l1-only) || { echo "$multi"; exit 1; }
echo "$multi" | tail -n 1
echo "$multi" | tail -n 1 | grep -q "recomputed_in_process=true" || { echo "$multi"; echo "multi_instance --l1-only did not recompute"; exit 1; }

step "http_service self-test (2000 requests over TCP, an invalidation half-way; no response may fail)"
http=$(env -u ACGS_CACHE_REDIS_URL cargo run --quiet --example http_service -- --port 0 --self-test 2000) || { echo "$http"; exit 1; }
echo "$http" | tail -n 1
echo "$http" | tail -n 1 | grep -q " errors=0 .*invalidation_recomputed=true" || { echo "$http"; echo "http_service answered wrongly or served a decision from before the invalidation"; exit 1; }

step "prometheus self-check, L1 only and with redis (/metrics must parse as exposition format, with hits counted)"
for url in "" "redis://127.0.0.1:$port"; do
  prom=$(ACGS_CACHE_REDIS_URL="$url" cargo run --quiet --example prometheus -- --port 0 --self-check) || { echo "$prom"; exit 1; }
  echo "$prom" | tail -n 1
  echo "$prom" | tail -n 1 | grep -q " ok=true$" || { echo "$prom"; echo "the prometheus self-check failed"; exit 1; }
done

step "failover report (master + replica + Sentinel of its own, 64 callers, the master killed; no call may fail)"
failover=$(cargo run --quiet --example failover -- --seconds 1 2>&1) || { echo "$failover"; exit 1; }
echo "$failover" | tail -n 1
echo "$failover" | tail -n 1 | grep -q "^failover: calls=[0-9]* failed=0 switch_ms=[0-9]*$" || { echo "$failover"; echo "a call failed during the failover"; exit 1; }

step "fleet_scale, small (4 instances in 2 processes, 200 invalidations/s for 1 s; every instance must hear every one)"
fleet=$(cargo run --quiet --example fleet_scale -- --instances 4 --rates 200 --seconds 1 --plot target/fleet_scale_smoke.svg) || { echo "$fleet"; exit 1; }
echo "$fleet" | tail -n 1
echo "$fleet" | tail -n 1 | grep -q "^fleet_scale: cells=1 .* all_heard=true$" || { echo "$fleet"; echo "an instance did not hear every invalidation"; exit 1; }

printf '\nall checks passed in %ss\n' "$SECONDS"
# The plain closing line CI reads: every cargo test binary's counts, summed.
echo "tests: ${passed} passed, ${failed} failed"
