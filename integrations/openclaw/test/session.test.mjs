// A scripted OpenClaw session against a real `clawvm-mcp serve`: the plugin is loaded by OpenClaw's own plugin
// loader, its engine resolved by OpenClaw's context-engine resolver, its hooks run by OpenClaw's hook runner and
// its bootstrap-file filter by OpenClaw's bootstrap resolution. No model runs (offline): the test calls the
// engine and the hooks exactly as the runtime does, in the runtime's order:
// bootstrap -> turns with tool calls -> compact -> /reset -> turns.
// Env: CLAWVM_MCP (the clawvm-mcp executable), ARTIFACTS (where the assembled prompts are saved; optional).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { internal } from "./openclaw-internals.mjs";

const PLUGIN_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLAWVM = process.env.CLAWVM_MCP ?? "clawvm-mcp";
const root = mkdtempSync(join(tmpdir(), "clawvm-openclaw-"));
const ARTIFACTS = process.env.ARTIFACTS ?? join(root, "artifacts");
const DB = join(root, "memory.db");
const WS = join(root, "workspace");
const KEY = "agent:main:main";
const PROJECT = "openclaw-demo";

const AGENTS = "# AGENTS.md - Your Workspace\n\nRead SOUL.md and USER.md first.\n\n## Red lines\n- Don't exfiltrate private data.\n";
const SOUL = "# SOUL.md\n\nBe genuinely helpful, not performatively helpful.\n";
const USER = "# USER.md\n\n- Name: Ada\n- Timezone: Europe/Berlin\n";
const MEMORY = "# MEMORY.md\n\n## Deploy rules\n- never deploy on Fridays\n- always run the migration dry-run first\n";

mkdirSync(WS);
writeFileSync(join(WS, "AGENTS.md"), AGENTS);
writeFileSync(join(WS, "SOUL.md"), SOUL);
writeFileSync(join(WS, "USER.md"), USER);
writeFileSync(join(WS, "MEMORY.md"), MEMORY);
mkdirSync(ARTIFACTS, { recursive: true });

const pluginConfig = { command: CLAWVM, args: ["serve", "--db", DB], projectId: PROJECT, sessionBudget: 4000, memoryShare: 0.25 };
const config = {
  plugins: {
    allow: ["clawvm"],
    load: { paths: [PLUGIN_DIR] },
    slots: { contextEngine: "clawvm" },
    entries: { clawvm: { enabled: true, config: pluginConfig } },
  },
};

// an observer of the same database (clawvm-mcp is coherent across processes): journal counts per session
const observer = new Client({ name: "openclaw-test-observer", version: "0" });
await observer.connect(new StdioClientTransport({ command: CLAWVM, args: ["serve", "--db", DB], stderr: "inherit" }));
// a staged write is a journal row in status "validated" until a boundary commits (or rejects) it
const pending = (journal) => (journal.validated ?? 0) + (journal.staged ?? 0);
async function stats(sessionId) {
  const r = await observer.callTool({ name: "session_stats", arguments: { session_id: sessionId } });
  assert.ok(!r.isError, JSON.stringify(r.content));
  return r.structuredContent;
}

let engine;
after(async () => {
  await engine?.dispose?.();
  await observer.close();
});

let clock = Date.UTC(2026, 11, 2, 9, 0, 0); // message timestamps in ms, as OpenClaw stamps them
const stamp = () => (clock += 1000);
const user = (text) => ({ role: "user", content: text, timestamp: stamp() });
const assistant = (content) => ({ role: "assistant", content, timestamp: stamp() });
const toolResult = (id, name, text) => ({ role: "toolResult", toolCallId: id, toolName: name, content: [{ type: "text", text }], isError: false, timestamp: stamp() });

function assertMemoryBlock(prompt, when) {
  assert.match(prompt, /<page id="oc\/bootstrap\/agents" type="bootstrap"/, `${when}: AGENTS.md page missing`);
  assert.ok(prompt.includes("Don't exfiltrate private data."), `${when}: AGENTS.md text missing`);
  assert.ok(prompt.includes("Be genuinely helpful"), `${when}: SOUL.md text missing`);
  assert.match(prompt, /type="constraint"/, `${when}: no constraint page`);
  assert.ok(prompt.includes("never deploy on Fridays"), `${when}: the deploy rule is missing`);
}

test("a scripted OpenClaw session keeps bootstrap and constraints through compaction and /reset", async () => {
  // MEMORY.md's rules as constraint pages of the project (`clawvm-mcp import`), shared by the OpenClaw sessions
  const rules = join(root, "rules");
  mkdirSync(rules);
  cpSync(join(WS, "MEMORY.md"), join(rules, "MEMORY.md"));
  execFileSync(CLAWVM, ["import", "--session", "importer", "--project", PROJECT, "--db", DB, rules], { stdio: "inherit" });

  // OpenClaw's loader loads the plugin; its resolver returns the engine the slot selects
  const loadOpenClawPlugins = await internal("loadOpenClawPlugins");
  const resolveContextEngine = await internal("resolveContextEngine");
  const resolveBootstrapFilesForRun = await internal("resolveBootstrapFilesForRun");
  const getGlobalHookRunner = await internal("getGlobalHookRunner");
  const registry = loadOpenClawPlugins({ config, workspaceDir: WS, activate: true, throwOnLoadError: true });
  const record = registry.plugins.find((p) => p.id === "clawvm");
  assert.equal(record?.status, "loaded", JSON.stringify(record));
  engine = await resolveContextEngine(config, { workspaceDir: WS });
  assert.equal(engine.info.id, "clawvm");
  const hooks = getGlobalHookRunner();
  assert.ok(hooks, "OpenClaw's hook runner is not initialised");

  let sessionId = "oc-session-1";
  const sessionFile = join(root, `${sessionId}.jsonl`);
  const ctx = () => ({ sessionKey: KEY, sessionId, agentId: "main", workspaceDir: WS });

  // bootstrap: OpenClaw's own bootstrap resolution no longer injects the files the engine supplies as pages
  const files = await resolveBootstrapFilesForRun({ workspaceDir: WS, sessionKey: KEY, sessionId, config });
  const injected = files.filter((f) => !f.missing).map((f) => f.name);
  for (const name of ["AGENTS.md", "SOUL.md", "USER.md"]) assert.ok(!injected.includes(name), `${name} injected twice: ${injected}`);
  assert.ok(injected.includes("MEMORY.md"), `MEMORY.md is not the engine's; OpenClaw keeps it: ${injected}`);
  const boot = await engine.bootstrap({ sessionId, sessionKey: KEY, sessionFile });
  assert.equal(boot.bootstrapped, true);
  const clawvmId = KEY; // the session key is a valid clawvm session id as it is

  const history = [];
  async function turn(userText, tools, t) {
    const pre = history.length;
    history.push(user(userText));
    const assembled = await engine.assemble({ sessionId, sessionKey: KEY, messages: history.slice(), tokenBudget: 16000, prompt: userText });
    assert.deepEqual(assembled.messages, history, "the engine does not own the transcript");
    assertMemoryBlock(assembled.systemPromptAddition, `turn ${t}`);
    const answers = [];
    for (const [i, { name, params, result }] of tools.entries()) {
      const id = `call-${t}-${i}`;
      history.push(assistant([{ type: "toolCall", id, name, arguments: params }]));
      const decision = await hooks.runBeforeToolCall({ toolName: name, params, toolCallId: id }, { ...ctx(), toolName: name, toolCallId: id });
      if (decision?.block) {
        answers.push({ name, fromMemory: true, reason: decision.blockReason });
        history.push(toolResult(id, name, decision.blockReason));
        continue;
      }
      answers.push({ name, fromMemory: false });
      await hooks.runAfterToolCall({ toolName: name, params, toolCallId: id, result: { content: [{ type: "text", text: result }] } }, { ...ctx(), toolName: name, toolCallId: id });
      history.push(toolResult(id, name, result));
    }
    history.push(assistant([{ type: "text", text: `done with: ${userText}` }]));
    await engine.afterTurn({ sessionId, sessionKey: KEY, sessionFile, messages: history.slice(), prePromptMessageCount: pre, tokenBudget: 16000 });
    return answers;
  }

  // turns with tool calls: the second identical read is answered from memory by before_tool_call
  const readme = { name: "read", params: { path: "README.md" }, result: "README: clawvm demo, version 3" };
  assert.deepEqual((await turn("What version is the demo?", [readme], 1)).map((a) => a.fromMemory), [false]);
  const second = await turn("Read it again and run the tests", [readme, { name: "exec", params: { command: "pytest -q" }, result: "3 passed" }], 2);
  assert.deepEqual(second.map((a) => a.fromMemory), [true, false]);
  assert.ok(second[0].reason.includes("README: clawvm demo, version 3"), second[0].reason);

  // compact: the compaction boundary commits the staged conversation pages, then the runtime's own compaction
  const before = await stats(clawvmId);
  assert.ok(pending(before.journal) > 0, `nothing staged before compaction: ${JSON.stringify(before.journal)}`);
  let runtimeCompaction;
  try {
    runtimeCompaction = await engine.compact({ sessionId, sessionKey: KEY, sessionFile, tokenBudget: 16000, force: true, forceReason: "manual" });
  } catch (error) {
    runtimeCompaction = { delegatedError: String(error).split("\n")[0] };
  }
  const compacted = await stats(clawvmId);
  assert.equal(pending(compacted.journal), 0, `staged rows left after compaction: ${JSON.stringify(compacted.journal)}`);
  assert.ok(compacted.journal.committed > before.journal.committed);
  const afterCompaction = await engine.assemble({ sessionId, sessionKey: KEY, messages: [], tokenBudget: 16000 });
  assertMemoryBlock(afterCompaction.systemPromptAddition, "after compaction");
  const said = ["user: What version is the demo?", "assistant: done with: What version", "user: Read it again"];
  const at = said.map((text) => afterCompaction.systemPromptAddition.indexOf(text));
  assert.ok(at.every((i) => i >= 0) && at.join() === [...at].sort((a, b) => a - b).join(), `conversation out of order: ${at}`);
  writeFileSync(join(ARTIFACTS, "prompt-after-compaction.txt"), afterCompaction.systemPromptAddition);

  // one more turn, then /reset: before_reset is the boundary that commits what the turn staged
  await turn("Note that the deploy is on Monday", [], 3);
  const beforeReset = await stats(clawvmId);
  assert.ok(pending(beforeReset.journal) > 0, JSON.stringify(beforeReset.journal));
  await hooks.runBeforeReset({ sessionFile, messages: history.slice(), reason: "reset" }, ctx());
  const reset = await stats(clawvmId);
  assert.equal(pending(reset.journal), 0, `staged rows left after reset: ${JSON.stringify(reset.journal)}`);
  assert.ok(reset.journal.committed > beforeReset.journal.committed);

  // /reset gives a new session id under the same key: bootstrap again, and the memory is still there
  sessionId = "oc-session-2";
  history.length = 0;
  const files2 = await resolveBootstrapFilesForRun({ workspaceDir: WS, sessionKey: KEY, sessionId, config });
  assert.ok(!files2.some((f) => !f.missing && f.name === "AGENTS.md"), "AGENTS.md injected twice after reset");
  await engine.bootstrap({ sessionId, sessionKey: KEY, sessionFile: join(root, `${sessionId}.jsonl`) });
  const afterReset = await engine.assemble({ sessionId, sessionKey: KEY, messages: [], tokenBudget: 16000 });
  assertMemoryBlock(afterReset.systemPromptAddition, "after reset");
  writeFileSync(join(ARTIFACTS, "prompt-after-reset.txt"), afterReset.systemPromptAddition);
  await turn("Which version did you read before the reset?", [readme], 4);
  await turn("Thanks", [], 5);

  const summary = {
    clawvm_session: clawvmId,
    journal_before_compaction: before.journal,
    journal_after_compaction: compacted.journal,
    journal_before_reset: beforeReset.journal,
    journal_after_reset: reset.journal,
    duplicate_signature: (await stats(clawvmId)).duplicate_signature,
    runtime_compaction: runtimeCompaction,
    injected_by_openclaw: injected,
  };
  writeFileSync(join(ARTIFACTS, "summary.json"), JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
});
