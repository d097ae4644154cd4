#!/usr/bin/env bash
# The OpenClaw plugin (integrations/openclaw) against the real `openclaw` package and Node 24 from the npm registry:
# it is built with tsc, loaded by OpenClaw's own plugin loader, and a scripted session (bootstrap -> turns with tool
# calls -> compact -> /reset -> turns) drives its engine and hooks through OpenClaw's resolver and hook runner
# against a real `clawvm-mcp serve`. No model runs (offline); the runtime's own compaction is called and reports
# that no model is configured.
#
# Node: openclaw needs node >= 24.16 (its preinstall refuses older), so `npm install node@24` goes into the tools
# prefix first and is first on PATH for the openclaw install, as .ci/third_party.sh does for node 22.
#
# Usage: PYTHON=/path/to/venv/bin/python bash .ci/openclaw.sh
#   CLAWVM_CI_TOOLS   npm prefix root (default: ~/.cache/clawvm-mcp-ci; this script uses <root>/openclaw, reused)
#   ARTIFACTS         where the assembled prompts after compaction and after reset are saved (default: a temp dir)
# Prints PASS/FAIL lines; exits non-zero if any check fails. Bounded: every step has a timeout (< 4 min in all).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
CLAWVM_MCP="$(dirname "$PYTHON")/clawvm-mcp"
TOOLS=${CLAWVM_CI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/clawvm-mcp-ci}/openclaw
NODE_VERSION=24.21.0
OPENCLAW_VERSION=2026.9.6
SDK_VERSION=1.32.2
TS_VERSION=5.9.3
WORK=$(mktemp -d)
ARTIFACTS=${ARTIFACTS:-$WORK/artifacts}
trap 'rm -rf "$WORK"' EXIT
failed=0
ok() { echo "PASS  $1"; }
ko() { failed=$((failed + 1)); echo "FAIL  $1"; }
run() { echo "+ $*"; "$@"; }

installed() {  # PACKAGE VERSION: is it in the prefix at that version?
    [ "$(node -p "require('$TOOLS/node_modules/$1/package.json').version" 2>/dev/null || true)" = "$2" ]
}

echo "== OpenClaw $OPENCLAW_VERSION, node $NODE_VERSION, @modelcontextprotocol/sdk $SDK_VERSION (npm prefix $TOOLS)"
mkdir -p "$TOOLS"
npm_install() { run timeout 150 npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error --save-exact "$@"; }
if ! [ -x "$TOOLS/node_modules/.bin/node" ] || [ "$("$TOOLS/node_modules/.bin/node" --version)" != "v$NODE_VERSION" ]; then
    npm_install "node@$NODE_VERSION" || { ko "install node@$NODE_VERSION"; exit 1; }
fi
export PATH="$TOOLS/node_modules/.bin:$PATH"
want=()
installed openclaw "$OPENCLAW_VERSION" || want+=("openclaw@$OPENCLAW_VERSION")
installed @modelcontextprotocol/sdk "$SDK_VERSION" || want+=("@modelcontextprotocol/sdk@$SDK_VERSION")
installed typescript "$TS_VERSION" || want+=("typescript@$TS_VERSION")
if [ ${#want[@]} -gt 0 ]; then
    npm_install "node@$NODE_VERSION" "${want[@]}" || { ko "install ${want[*]}"; exit 1; }
fi
run node --version

# the plugin is built in a copy, so the working tree gets no dist/ or node_modules/
PLUGIN="$WORK/plugin"
mkdir -p "$PLUGIN"
cp -r "$ROOT/integrations/openclaw/src" "$ROOT/integrations/openclaw/test" "$PLUGIN/"
cp "$ROOT/integrations/openclaw/package.json" "$ROOT/integrations/openclaw/openclaw.plugin.json" \
    "$ROOT/integrations/openclaw/tsconfig.json" "$PLUGIN/"
ln -s "$TOOLS/node_modules" "$PLUGIN/node_modules"
if (cd "$PLUGIN" && run timeout 90 tsc -p tsconfig.json); then ok "plugin builds (tsc strict)"; else ko "plugin builds (tsc strict)"; fi

if (cd "$WORK" && run timeout 60 node --test "$PLUGIN/test/workspace.test.mjs"); then
    ok "bootstrap files: a symlinked, special, oversized or outside file is never sent as a page"
else
    ko "bootstrap files: a symlinked, special, oversized or outside file is never sent as a page"
fi

mkdir -p "$ARTIFACTS"
if (cd "$WORK" && CLAWVM_MCP="$CLAWVM_MCP" ARTIFACTS="$ARTIFACTS" run timeout 180 node --test "$PLUGIN/test/session.test.mjs"); then
    ok "scripted OpenClaw session: loaded by OpenClaw's loader; bootstrap and constraints in every prompt after compaction and reset; staged writes committed at both boundaries"
else
    ko "scripted OpenClaw session"
fi
for f in prompt-after-compaction.txt prompt-after-reset.txt summary.json; do
    [ -f "$ARTIFACTS/$f" ] && { echo "== $f"; cat "$ARTIFACTS/$f"; echo; }
done
if [ "$failed" -gt 0 ]; then echo "openclaw: $failed check(s) FAILED"; exit 1; fi
echo "openclaw: all checks passed"
