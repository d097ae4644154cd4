#!/usr/bin/env bash
# Third-party MCP clients against clawvm-mcp, installed from the npm registry at pinned versions:
#   1. the MCP Inspector CLI (@modelcontextprotocol/inspector) over stdio: lists tools/resources/prompts and calls
#      session_start / page_write / page_read / context_assemble, in the legacy and the modern protocol era;
#   2. the official conformance suite (@modelcontextprotocol/conformance): every server scenario its
#      `list --server` prints, over streamable HTTP on loopback, judged against .ci/conformance-baseline.yml (the
#      suite's own expected-failures format: checks that need its fixtures or an optional feature we lack);
#   3. bearer-token enforcement of `serve --http`, with curl and with the Inspector sending the header.
#
# Bearer token decision: the conformance suite's `server` command takes only --url and cannot send an
# Authorization header, so the conformance server runs with --no-auth, bound to 127.0.0.1 (the one case the CLI
# allows it for: loopback testing). Authentication is checked separately in step 3 against a second server that
# requires CLAWVM_TOKEN: no header -> 401, a wrong token -> 401, the right token -> 200, and the Inspector CLI
# lists the tools through the token.
#
# Node: Inspector 2.x wants node >= 22.19 and conformance needs node 22; if the machine's node is older,
# `npm install node@22` puts a node 22 binary under the tools prefix and it goes first on PATH.
#
# Usage: PYTHON=/path/to/venv/bin/python bash .ci/third_party.sh
#   PYTHON            interpreter with clawvm-mcp installed (default: the repo's .venv/bin/python if it exists,
#                     which is the venv .ci/run makes, else python3)
#   CLAWVM_CI_TOOLS   npm prefix for node/inspector/conformance (default: ~/.cache/clawvm-mcp-ci; reused if present)
# Exits non-zero if any check fails; prints every command it runs (lines starting with '+').
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
TOOLS=${CLAWVM_CI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/clawvm-mcp-ci}
INSPECTOR_VERSION=2.12.0
CONFORMANCE_VERSION=0.2.0-alpha.12  # the newest 0.2.0 alpha on npm (npm view @modelcontextprotocol/conformance versions)
NODE_MAJOR=22
BASELINE="$ROOT/.ci/conformance-baseline.yml"
STEP_TIMEOUT=120

WORK=$(mktemp -d)
PIDS=()
passed=0
failed=0
failures=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

run() {  # print the command, then run it
    echo "+ $*"
    "$@"
}

ok() { passed=$((passed + 1)); echo "PASS  $1"; }
ko() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL  $1"; }

# jcheck NAME FILE EXPR: EXPR is a Python expression over r, the JSON document in FILE
jcheck() {
    if "$PYTHON" - "$WORK/$2" "$3" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as fh:
    r = json.load(fh)
ok = eval(sys.argv[2], {"r": r, "json": json})
if not ok:
    print(f"  check failed: {sys.argv[2]}\n  on: {json.dumps(r)[:1500]}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
    then ok "$1"; else ko "$1"; fi
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {  # PORT PID
    for _ in $(seq 1 150); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "server (pid $2) exited before listening" >&2
            return 1
        fi
        if "$PYTHON" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "server did not listen on 127.0.0.1:$1" >&2
    return 1
}

echo "== clawvm-mcp third-party client checks"
run "$PYTHON" -c 'import clawvm_mcp; print("clawvm-mcp", clawvm_mcp.__version__)'

# ------------------------------------------------------------------------------------------------ tools from npm
echo "== node, MCP Inspector $INSPECTOR_VERSION, conformance $CONFORMANCE_VERSION (npm prefix $TOOLS)"
mkdir -p "$TOOLS"
[ -f "$TOOLS/package.json" ] || echo '{"private": true}' > "$TOOLS/package.json"
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
installed_version() {  # PACKAGE-DIR -> version or empty
    "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
        "$TOOLS/node_modules/$1/package.json" 2>/dev/null || true
}
want=()
system_node=$(command -v node || true)
if [ -z "$system_node" ] || [ "$(node_major "$system_node")" -lt "$NODE_MAJOR" ]; then
    echo "machine node: ${system_node:-none} ($( [ -n "$system_node" ] && "$system_node" --version )); using node@$NODE_MAJOR from npm"
    if [ ! -x "$TOOLS/node_modules/.bin/node" ] || [ "$(node_major "$TOOLS/node_modules/.bin/node")" -lt "$NODE_MAJOR" ]; then
        want+=("node@$NODE_MAJOR")
    fi
fi
[ "$(installed_version @modelcontextprotocol/inspector)" = "$INSPECTOR_VERSION" ] \
    || want+=("@modelcontextprotocol/inspector@$INSPECTOR_VERSION")
[ "$(installed_version @modelcontextprotocol/conformance)" = "$CONFORMANCE_VERSION" ] \
    || want+=("@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
if [ ${#want[@]} -gt 0 ]; then
    run npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error --save-exact "${want[@]}"
fi
export PATH="$TOOLS/node_modules/.bin:$PATH"
run node --version
INSPECTOR="$TOOLS/node_modules/.bin/mcp-inspector"
CONFORMANCE="$TOOLS/node_modules/.bin/conformance"
export MCP_CATALOG_PATH="$WORK/inspector-catalog.json" MCP_CLIENT_CONFIG_PATH="$WORK/inspector-client.json"

# ------------------------------------------------------------------------------------------------ 1. Inspector, stdio
echo "== 1. MCP Inspector CLI over stdio"
SERVER=("$PYTHON" -m clawvm_mcp serve --db "$WORK/inspector.db")
# inspect NAME OUT [inspector options...]: one Inspector CLI call against a fresh stdio server on the same database
inspect() {
    local out=$2 rc=0
    shift 2
    echo "+ mcp-inspector --cli -q --format json -e CLAWVM_LOG=WARNING $* -- ${SERVER[*]}"
    timeout "$STEP_TIMEOUT" "$INSPECTOR" --cli -q --format json -e CLAWVM_LOG=WARNING "$@" -- "${SERVER[@]}" \
        > "$WORK/$out" 2> "$WORK/$out.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "  exit $rc: $(head -c 1500 "$WORK/$out.err")"
    fi
    return "$rc"
}
TOOL_NAMES='{"session_start","page_write","page_read","page_pin","page_unpin","page_list","recall","context_assemble","tool_execute","lifecycle","session_stats"}'
if inspect tools/list tools.json --method tools/list; then
    jcheck "tools/list: the eleven tools, each with an output schema" tools.json \
        "{t['name'] for t in r['result']['tools']} == $TOOL_NAMES and all('outputSchema' in t for t in r['result']['tools'])"
else ko "tools/list"; fi
if inspect "tools/list --strict" strict.json --method tools/list --strict; then
    ok "tools/list --strict: no tool-schema portability errors"
else ko "tools/list --strict"; fi
if inspect resources/templates/list templates.json --method resources/templates/list; then
    jcheck "resources/templates/list: context, pages, journal, faults" templates.json \
        "sorted(t['uriTemplate'] for t in r['result']['resourceTemplates']) == sorted(['clawvm://sessions/{session_id}/context{?budget}', 'clawvm://sessions/{session_id}/pages/{page_id}', 'clawvm://sessions/{session_id}/journal', 'clawvm://sessions/{session_id}/faults'])"
else ko "resources/templates/list"; fi
if inspect resources/list resources.json --method resources/list; then
    jcheck "resources/list answers (no session yet: empty)" resources.json "r['result']['resources'] == []"
else ko "resources/list"; fi
if inspect prompts/list prompts.json --method prompts/list; then
    jcheck "prompts/list: assemble_context(session_id, budget)" prompts.json \
        "[(p['name'], sorted(a['name'] for a in p['arguments'])) for p in r['result']['prompts']] == [('assemble_context', ['budget', 'session_id'])]"
else ko "prompts/list"; fi

START='{"session_id":"ci","budget":2000,"bootstrap":[{"page_id":"rules","content":"# CI rules\n- never push to main\n- run the tests"}]}'
WRITE='{"session_id":"ci","page_id":"notes/inspector","op":"create","type":"preference","content":"editor: the inspector wrote this","provenance":{"source":"user","ref":"ext:ci","turn":0}}'
if inspect "tools/call session_start" start.json --method tools/call --tool-name session_start --tool-args-json "$START"; then
    jcheck "session_start: bootstrap page committed" start.json \
        "r['result']['structuredContent']['bootstrap'][0]['status'] == 'committed'"
else ko "tools/call session_start"; fi
if inspect "resources/list after session_start" listed.json --method resources/list; then
    jcheck "resources/list names the session's context" listed.json \
        "[x['uri'] for x in r['result']['resources']] == ['clawvm://sessions/ci/context']"
else ko "resources/list after session_start"; fi
if inspect "tools/call page_write" write.json --method tools/call --tool-name page_write --tool-args-json "$WRITE"; then
    jcheck "page_write: committed at v1" write.json \
        "(r['result']['structuredContent']['status'], r['result']['structuredContent']['version']) == ('committed', 1)"
else ko "tools/call page_write"; fi
if inspect "tools/call page_read" read.json --method tools/call --tool-name page_read \
        --tool-args-json '{"session_id":"ci","page_id":"notes/inspector"}'; then
    jcheck "page_read: hit with the written text" read.json \
        "r['result']['structuredContent']['outcome'] == 'hit' and r['result']['structuredContent']['page']['text'] == 'editor: the inspector wrote this'"
else ko "tools/call page_read"; fi
if inspect "tools/call context_assemble" assemble.json --method tools/call --tool-name context_assemble \
        --tool-args-json '{"session_id":"ci","budget":500}'; then
    jcheck "context_assemble: pinned rules and the page in the prompt, within budget" assemble.json \
        "'never push to main' in r['result']['structuredContent']['prompt'] and 'inspector wrote this' in r['result']['structuredContent']['prompt'] and r['result']['structuredContent']['tokens_used'] <= 500 and not r['result']['structuredContent']['physical_insufficiency']"
else ko "tools/call context_assemble"; fi
if inspect "context_assemble (modern era)" modern.json --protocol-era modern --method tools/call \
        --tool-name context_assemble --tool-args-json '{"session_id":"ci","budget":500}'; then
    jcheck "context_assemble over the 2026-07-28 era" modern.json \
        "'never push to main' in r['result']['structuredContent']['prompt']"
else ko "context_assemble (modern era)"; fi
# a page id's "/" is percent-encoded in the resource URI ({page_id} is a simple template variable)
if inspect "resources/read page" page.json --method resources/read --uri clawvm://sessions/ci/pages/notes%2Finspector; then
    jcheck "resources/read clawvm://sessions/ci/pages/notes%2Finspector" page.json \
        "r['result']['contents'][0]['text'] == 'editor: the inspector wrote this'"
else ko "resources/read page"; fi
if inspect "prompts/get assemble_context" prompt.json --method prompts/get --prompt-name assemble_context \
        --prompt-args session_id=ci budget=300; then
    jcheck "prompts/get assemble_context: the assembled prompt as a message" prompt.json \
        "'never push to main' in json.dumps(r['result']['messages'])"
else ko "prompts/get assemble_context"; fi
set +e
inspect "page_read of an unknown session (expect a tool error)" unknown.json --method tools/call \
    --tool-name page_read --tool-args-json '{"session_id":"nobody","page_id":"x"}'
rc=$?
set -e
if [ "$rc" -eq 5 ] && grep -q "call session_start first" "$WORK/unknown.json"; then
    ok "unknown session: isError (Inspector exit 5) with a message saying what to do"
else ko "unknown session: expected Inspector exit 5 and 'call session_start first', got exit $rc"; fi

# ------------------------------------------------------------------------------------------------ 2. conformance, HTTP
echo "== 2. conformance suite over streamable HTTP (loopback, --no-auth: the suite cannot send a bearer token)"
# every server scenario the pinned suite lists, so a new scenario in a new pin runs without anyone choosing it
mapfile -t SCENARIOS < <("$CONFORMANCE" list --server | sed -n 's/^  - \([a-z0-9][a-z0-9-]*\)\( .*\)\{0,1\}$/\1/p')
echo "+ $CONFORMANCE list --server: ${#SCENARIOS[@]} server scenarios"
if [ "${#SCENARIOS[@]}" -ge 60 ]; then ok "conformance lists ${#SCENARIOS[@]} server scenarios (all are run)"
else ko "conformance list --server gave ${#SCENARIOS[@]} scenarios (0.2.0-alpha.12 has 65): is the parsing right?"; fi
# a baseline entry for a scenario the suite no longer has would excuse nothing and hide a typo
for entry in $(sed -n 's/^  - \([a-z0-9-]*\):.*$/\1/p' "$BASELINE" | sort -u); do
    [[ " ${SCENARIOS[*]} " == *" $entry "* ]] || ko "baseline names $entry, which the suite does not list"
done
PORT=$(free_port)
echo "+ $PYTHON -m clawvm_mcp serve --http --no-auth --host 127.0.0.1 --port $PORT --db $WORK/conformance.db &"
"$PYTHON" -m clawvm_mcp serve --http --no-auth --host 127.0.0.1 --port "$PORT" --db "$WORK/conformance.db" \
    > "$WORK/conformance-server.log" 2>&1 &
PIDS+=($!)
wait_for_port "$PORT" "${PIDS[-1]}"
for scenario in "${SCENARIOS[@]}"; do
    if run timeout "$STEP_TIMEOUT" "$CONFORMANCE" server --url "http://127.0.0.1:$PORT/mcp" --scenario "$scenario" \
        --expected-failures "$BASELINE" > "$WORK/conformance-$scenario.log" 2>&1; then
        expected=$(grep -c '^  ~ ' "$WORK/conformance-$scenario.log" || true)
        echo "  $(grep -E 'Passed: ' "$WORK/conformance-$scenario.log" | tail -1) ($expected in the baseline)"
        ok "conformance $scenario"
    else
        tail -25 "$WORK/conformance-$scenario.log"
        ko "conformance $scenario"
    fi
done

# ------------------------------------------------------------------------------------------------ 3. bearer token
echo "== 3. bearer token on serve --http"
TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')
echo "+ env -u CLAWVM_TOKEN $PYTHON -m clawvm_mcp serve --http (expect a refusal)"
if env -u CLAWVM_TOKEN timeout 30 "$PYTHON" -m clawvm_mcp serve --http --port "$(free_port)" \
        --db "$WORK/refused.db" > "$WORK/refused.log" 2>&1; then
    ko "serve --http without CLAWVM_TOKEN or --no-auth must refuse to start"
else
    grep -q "CLAWVM_TOKEN" "$WORK/refused.log" && ok "serve --http without a token refuses to start" \
        || ko "serve --http without a token: no clear message"
fi
AUTH_PORT=$(free_port)
echo "+ CLAWVM_TOKEN=*** $PYTHON -m clawvm_mcp serve --http --port $AUTH_PORT --db $WORK/auth.db"
CLAWVM_TOKEN="$TOKEN" "$PYTHON" -m clawvm_mcp serve --http --host 127.0.0.1 --port "$AUTH_PORT" \
    --db "$WORK/auth.db" > "$WORK/auth-server.log" 2>&1 &
PIDS+=($!)
wait_for_port "$AUTH_PORT" "${PIDS[-1]}"
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
status() {  # extra curl args... -> HTTP status of an initialize POST
    curl -s -o "$WORK/curl.out" -w '%{http_code}' -X POST "http://127.0.0.1:$AUTH_PORT/mcp" \
        -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' "$@" --data "$INIT"
}
echo "+ curl -X POST http://127.0.0.1:$AUTH_PORT/mcp (initialize) without / with a wrong / with the bearer token"
code=$(status)
[ "$code" = 401 ] && ok "no Authorization header -> 401" || ko "no Authorization header -> $code (want 401)"
code=$(status -H "Authorization: Bearer wrong-$TOKEN")
[ "$code" = 401 ] && ok "wrong bearer token -> 401" || ko "wrong bearer token -> $code (want 401)"
code=$(status -H "Authorization: Bearer $TOKEN")
if [ "$code" = 200 ] && grep -q '"serverInfo"' "$WORK/curl.out"; then ok "right bearer token -> 200 initialize"
else ko "right bearer token -> $code (want 200 with serverInfo)"; fi
echo "+ $INSPECTOR --cli -q --format json http://127.0.0.1:$AUTH_PORT/mcp --header 'Authorization: Bearer ***' --method tools/list"
if timeout "$STEP_TIMEOUT" "$INSPECTOR" --cli -q --format json "http://127.0.0.1:$AUTH_PORT/mcp" \
        --header "Authorization: Bearer $TOKEN" --method tools/list > "$WORK/http-tools.json" 2> "$WORK/http-tools.err"; then
    jcheck "Inspector over HTTP with the bearer token lists the tools" http-tools.json \
        "len(r['result']['tools']) == 11"
else
    head -c 1500 "$WORK/http-tools.err"
    ko "Inspector over HTTP with the bearer token"
fi

# ------------------------------------------------------------------------------------------------ uvx
echo "== 4. one-command run from the checkout with uvx (what server.json's runtimeHint and the Desktop config use)"
UVX="$(dirname "$PYTHON")/uvx"
if [ ! -x "$UVX" ]; then run "$PYTHON" -m pip install -q uv; fi
echo "+ uvx --from $ROOT clawvm-mcp --version"
if out=$(UV_CACHE_DIR="$WORK/uv-cache" timeout "$STEP_TIMEOUT" "$UVX" --from "$ROOT" clawvm-mcp --version 2> "$WORK/uvx.err"); then
    case "$out" in
        "clawvm-mcp "*) ok "uvx --from . clawvm-mcp --version -> $out" ;;
        *) ko "uvx --from . clawvm-mcp --version printed '$out'" ;;
    esac
else
    tail -5 "$WORK/uvx.err"
    ko "uvx --from . clawvm-mcp --version"
fi

# ------------------------------------------------------------------------------------------------ summary
echo "== summary"
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "third_party: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
