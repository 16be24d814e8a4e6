#!/usr/bin/env bash
# The project's test command (README): installs and starts what the tests need on a fresh
# Debian machine (LibreOffice and poppler for legacy formats, Dovecot and Postfix for the
# mail tests, PostgreSQL for the store tests), then runs every test. Safe to run again:
# installs are skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v soffice >/dev/null 2>&1 || need+=(libreoffice-writer-nogui libreoffice-calc-nogui)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
# An independent TNEF reader: tests/fixtures_selfcheck.rs checks our winmail.dat builder with it.
command -v tnef >/dev/null 2>&1 || need+=(tnef)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== mail servers (Dovecot, Postfix)"
bash tests/mailstack/install.sh

echo "== PostgreSQL on 127.0.0.1:5432"
pg_url="${INTAKE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! (command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432); then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
export INTAKE_TEST_PG_URL="$pg_url"

# tests/fuzz.rs: seeded by the commit, so a run can be replayed exactly and each commit
# explores inputs of its own. FUZZ_SEED overrides; FUZZ_SECS (15) is the budget per target.
if [ -z "${FUZZ_SEED:-}" ] && head=$(git rev-parse HEAD 2>/dev/null); then
  export FUZZ_SEED=$((16#${head:0:15}))
fi
echo "== cargo test (FUZZ_SEED=${FUZZ_SEED:-clock})"
# Each test binary starts its own Dovecot + Postfix on a port block of its own and stops it
# when it exits (tests/support/mailstack.rs).
# --lib --tests: the library's unit tests and tests/ (which build every binary for
# CARGO_BIN_EXE_*); the binaries hold no tests, so no test harness is built for them.
cargo test --lib --tests --locked 2>&1
