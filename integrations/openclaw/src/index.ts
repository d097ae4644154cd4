/** OpenClaw plugin entry: registers the "clawvm" context engine and the hooks that feed it. Select it with
 * plugins.slots.contextEngine = "clawvm"; settings live under plugins.entries.clawvm.config. */
import { delegateCompactionToRuntime } from "openclaw/plugin-sdk/core";
import { definePluginEntry, type OpenClawPluginApi } from "openclaw/plugin-sdk/plugin-entry";
import { ClawvmClient } from "./client.js";
import { resolveConfig } from "./config.js";
import { ClawvmMemory, type Message } from "./engine.js";
import { resultText } from "./messages.js";

export const ENGINE_ID = "clawvm";

type Api = OpenClawPluginApi;
type ContextEngine = Parameters<Api["registerContextEngine"]>[1] extends (ctx: never) => infer E
  ? Awaited<E>
  : never;
type CompactParams = Parameters<ContextEngine["compact"]>[0];

function estimateTokens(messages: unknown[]): number {
  return Math.ceil(JSON.stringify(messages).length / 4);
}

/** One memory per plugin instance; the engine factory and every hook share it (and its MCP connection). */
export function register(api: Api): void {
  const config = resolveConfig(api.pluginConfig);
  const client = new ClawvmClient(config);
  const log = { info: (m: string) => api.logger.info(m), warn: (m: string) => api.logger.warn(m) };
  let memory: ClawvmMemory | undefined;
  const memoryFor = (workspaceDir?: string): ClawvmMemory => (memory ??= new ClawvmMemory(client, config, workspaceDir, log));

  api.registerContextEngine(ENGINE_ID, (ctx) => {
    const mem = memoryFor(ctx.workspaceDir);
    const engine: ContextEngine = {
      info: { id: ENGINE_ID, name: "ClawVM memory (clawvm-mcp)", version: "0.1.0", ownsCompaction: false },
      async bootstrap({ sessionId, sessionKey }) {
        const state = await mem.start(mem.keyFor(sessionId, sessionKey));
        return { bootstrapped: true, reason: `clawvm session ${state.clawvmId}; bootstrap pages: ${state.supplied.join(", ") || "none"}` };
      },
      async ingest({ sessionId, sessionKey, message, isHeartbeat }) {
        if (isHeartbeat) return { ingested: false };
        return { ingested: await mem.ingest(mem.keyFor(sessionId, sessionKey), message as Message) };
      },
      async afterTurn({ sessionId, sessionKey, messages, prePromptMessageCount, isHeartbeat }) {
        const key = mem.keyFor(sessionId, sessionKey);
        if (isHeartbeat) return;
        for (const message of messages.slice(prePromptMessageCount)) await mem.ingest(key, message as Message);
        await mem.lifecycle(key, "turn_end");
      },
      async assemble({ sessionId, sessionKey, messages, tokenBudget }) {
        const assembled = await mem.assemble(mem.keyFor(sessionId, sessionKey), tokenBudget);
        return {
          messages,
          estimatedTokens: estimateTokens(messages) + Number(assembled.tokens_used ?? 0),
          systemPromptAddition: String(assembled.prompt ?? ""),
        };
      },
      async compact(params: CompactParams) {
        const boundary = await mem.lifecycle(mem.keyFor(params.sessionId, params.sessionKey), "compaction");
        log.info(`clawvm: compaction boundary committed ${String(boundary.committed)} staged writes`);
        return await delegateCompactionToRuntime(params);
      },
      async dispose() {
        await client.close();
      },
    };
    return engine;
  });

  api.on("before_tool_call", async (event, ctx) => {
    const key = memoryFor().keyFor(ctx.sessionId, ctx.sessionKey);
    const stored = await memoryFor().beforeTool(key, event.toolCallId, event.toolName, event.params);
    if (stored === undefined) return;
    return {
      block: true,
      blockReason: `Answered from memory (clawvm-mcp): an identical ${event.toolName} call already returned this, and nothing since has changed it:\n${stored}`,
    };
  });

  api.on("after_tool_call", async (event, ctx) => {
    if (event.error !== undefined) return;
    const key = memoryFor().keyFor(ctx.sessionId, ctx.sessionKey);
    await memoryFor().recordTool(key, event.toolCallId, event.toolName, event.params, resultText(event.result));
  });

  api.on("before_reset", async (_event, ctx) => {
    await memoryFor().lifecycle(memoryFor().keyFor(ctx.sessionId, ctx.sessionKey), "reset");
  });

  // OpenClaw resolves the workspace bootstrap files itself; drop the ones this engine supplies as pages, but only
  // while it is the selected engine and clawvm-mcp took them (otherwise OpenClaw injects them as usual).
  api.registerHook(
    "agent:bootstrap",
    async (event) => {
      const context = event.context as { bootstrapFiles?: { name?: string }[]; workspaceDir?: string; cfg?: unknown; sessionId?: string };
      const cfg = (context.cfg ?? api.config) as { plugins?: { slots?: { contextEngine?: string } } } | undefined;
      if (cfg?.plugins?.slots?.contextEngine !== ENGINE_ID || !Array.isArray(context.bootstrapFiles)) return;
      try {
        const mem = memoryFor(context.workspaceDir);
        const supplied = new Set(await mem.suppliedFiles(mem.keyFor(context.sessionId, event.sessionKey || undefined), context.workspaceDir));
        context.bootstrapFiles = context.bootstrapFiles.filter((f) => !supplied.has(f.name ?? ""));
      } catch (error) {
        log.warn(`clawvm: bootstrap files left to OpenClaw (${String(error)})`);
      }
    },
    { name: "clawvm-bootstrap-files", description: "leave the bootstrap files clawvm-mcp supplies out of the prompt" },
  );
}

export default definePluginEntry({
  id: ENGINE_ID,
  name: "ClawVM memory",
  description: "clawvm-mcp as OpenClaw's context engine",
  register,
});
