#!/usr/bin/env bash
# Build the ggufref documentation site into build/site.
# The Dockerfile runs this script, and it runs the same way on a machine without Docker:
#   docker/build-docs.sh            # installs npm deps with `npm ci` if needed, then builds
# Needs: node >= 18.19 + npm, git, Chromium (PUPPETEER_EXECUTABLE_PATH, default /usr/bin/chromium),
# the DejaVu fonts (Debian: fonts-dejavu-core). Exits non-zero on any Antora warning.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PUPPETEER_SKIP_DOWNLOAD=1
export PUPPETEER_EXECUTABLE_PATH="${PUPPETEER_EXECUTABLE_PATH:-/usr/bin/chromium}"

if [ ! -x "$PUPPETEER_EXECUTABLE_PATH" ] && ! ls .cache/mermaid/*.svg >/dev/null 2>&1; then
  echo "build-docs: Chromium not found at $PUPPETEER_EXECUTABLE_PATH (apt-get install -y chromium)" >&2
fi

# npm deps: (re)install from the committed lock file when missing or older than the lock.
# (A symlinked node_modules belongs to another checkout: never let `npm ci` wipe it.)
if [ ! -L node_modules ] && { [ ! -f node_modules/.package-lock.json ] \
    || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# Antora reads the content from a git repository with at least one commit. In a fresh checkout
# without commits, or a container without .git, build from a throwaway snapshot repository.
PLAYBOOK=antora-playbook.yml
if ! git -C "$ROOT" rev-parse --verify -q HEAD >/dev/null 2>&1 \
    || [ "$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null)" != "$ROOT" ]; then
  SNAP="$ROOT/build/docs-snapshot"
  rm -rf "$SNAP" && mkdir -p "$SNAP"
  # The whole tree (docs may include tagged regions of pysrc/, csrc/, tests/), minus heavy dirs.
  tar -C "$ROOT" -c --exclude=./node_modules --exclude=./build --exclude=./.cache --exclude=./.git \
    --exclude='*.so' --exclude=__pycache__ . | tar -C "$SNAP" -x
  git -C "$SNAP" init -q -b main
  git -C "$SNAP" add -A
  git -C "$SNAP" -c user.name=ggufref -c user.email=docs@ggufref.invalid \
    commit -q -m "docs snapshot for the site build"
  PLAYBOOK="$ROOT/build/antora-playbook.snapshot.yml"
  sed -e "s|^\(\s*- url:\) \.$|\1 $SNAP|" antora-playbook.yml > "$PLAYBOOK"
  sed -i -e "s|\./docs/|$ROOT/docs/|g" -e "s|\./build/site|$ROOT/build/site|" \
    -e "s|\./\.cache/|$ROOT/.cache/|" "$PLAYBOOK"
fi

start=$(date +%s)
LOG="$ROOT/build/antora.log"
mkdir -p "$ROOT/build"
# failure_level: warn in the playbook makes antora exit non-zero on any warning; the log is kept.
set +e
npx --no-install antora --stacktrace "$PLAYBOOK" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "build-docs: antora failed (exit $status); see $LOG" >&2
  exit "$status"
fi
if grep -qE '"level":"(warn|error|fatal)"|\b(WARN|ERROR|FATAL)\b' "$LOG"; then
  echo "build-docs: warnings in $LOG" >&2
  exit 1
fi
pages=$(find build/site -name '*.html' | wc -l)
echo "build-docs: built build/site ($pages HTML files) in $(( $(date +%s) - start )) s"
