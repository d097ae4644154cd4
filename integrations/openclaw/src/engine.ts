/** The context engine OpenClaw's runtime calls, and the hooks around it, all backed by one clawvm-mcp session per
 * OpenClaw session key: the key survives /new and /reset (which change the session id), so memory does too. */
import type { ClawvmClient, Json } from "./client.js";
import type { ClawvmConfig } from "./config.js";
import { digest, resultText, sessionIdFor, textOf, toolCallsOf } from "./messages.js";
import { readBootstrap, type Refused } from "./workspace.js";

export type Message = { role?: unknown; content?: unknown; timestamp?: unknown; toolCallId?: unknown; toolName?: unknown; isError?: unknown };

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

interface SessionState {
  clawvmId: string;
  turn: number;
  supplied: string[];
  refused: Refused[];
}

function order(timestamp: unknown, turn: number): string {
  const ms = typeof timestamp === "number" ? timestamp : typeof timestamp === "string" ? Date.parse(timestamp) : NaN;
  return Number.isFinite(ms) ? String(Math.floor(ms)).padStart(13, "0") : `t${String(turn).padStart(12, "0")}`;
}

export class ClawvmMemory {
  private readonly sessions = new Map<string, SessionState>();
  private readonly starting = new Map<string, Promise<SessionState>>();
  private readonly keyOfSessionId = new Map<string, string>();
  private readonly toolArgs = new Map<string, { name: string; args: Record<string, unknown> }>();
  private readonly recordedCalls = new Set<string>();
  private readonly idempotent: Set<string>;

  constructor(
    readonly client: ClawvmClient,
    readonly config: ClawvmConfig,
    private readonly workspaceDir: string | undefined,
    private readonly log: Logger,
  ) {
    this.idempotent = new Set(config.idempotentTools);
  }

  /** The session key when OpenClaw gave one (now or earlier for this session id), else the session id. */
  keyFor(sessionId: string | undefined, sessionKey: string | undefined): string {
    if (sessionKey) {
      if (sessionId) this.keyOfSessionId.set(sessionId, sessionKey);
      return sessionKey;
    }
    if (sessionId) return this.keyOfSessionId.get(sessionId) ?? sessionId;
    throw new Error("clawvm plugin: neither a session key nor a session id was given");
  }

  /** session_start once per key (resumed on later starts), with the workspace's bootstrap files hard-pinned. */
  async start(key: string, workspaceDir = this.workspaceDir): Promise<SessionState> {
    const known = this.sessions.get(key);
    if (known) return known;
    let pending = this.starting.get(key);
    if (!pending) {
      pending = this.open(key, workspaceDir).finally(() => this.starting.delete(key));
      this.starting.set(key, pending);
    }
    return pending;
  }

  private async open(key: string, workspaceDir: string | undefined): Promise<SessionState> {
    const files = workspaceDir
      ? await readBootstrap(workspaceDir, this.config.bootstrapFiles, this.config.maxFileBytes)
      : { pages: [], supplied: [], refused: [] };
    for (const r of files.refused) this.log.warn(`clawvm: ${r.reason}; OpenClaw injects it as usual`);
    const clawvmId = sessionIdFor(key);
    const started = await this.client.call("session_start", {
      session_id: clawvmId,
      project_id: this.config.projectId,
      budget: this.config.sessionBudget,
      bootstrap: files.pages,
    });
    const results = (started.bootstrap as { status: string; page_id: string; reasons?: unknown }[]) ?? [];
    const rejected = new Set(results.filter((r) => r.status === "rejected").map((r) => r.page_id));
    for (const r of results.filter((x) => x.status === "rejected")) {
      this.log.warn(`clawvm: bootstrap page ${r.page_id} rejected: ${JSON.stringify(r.reasons)}`);
    }
    const supplied = files.supplied.filter((_, i) => !rejected.has(files.pages[i]?.page_id ?? ""));
    const state = { clawvmId, turn: Number(started.turn ?? 0), supplied, refused: files.refused };
    this.sessions.set(key, state);
    return state;
  }

  /** Files OpenClaw must not inject itself for this session (the engine supplies them as pages). */
  async suppliedFiles(key: string, workspaceDir: string | undefined): Promise<string[]> {
    return (await this.start(key, workspaceDir)).supplied;
  }

  async lifecycle(key: string, event: "turn_end" | "compaction" | "reset" | "flush" | "session_end"): Promise<Json> {
    const state = await this.start(key);
    const result = await this.client.call("lifecycle", { session_id: state.clawvmId, event });
    state.turn = Number(result.turn ?? state.turn);
    return result;
  }

  async assemble(key: string, tokenBudget: number | undefined): Promise<Json> {
    const state = await this.start(key);
    const budget = tokenBudget ? Math.max(1, Math.floor(tokenBudget * this.config.memoryShare)) : undefined;
    return this.client.call("context_assemble", { session_id: state.clawvmId, ...(budget ? { budget } : {}) });
  }

  /** One agent message: a tool result through tool_execute, a user or assistant text as a staged page. */
  async ingest(key: string, message: Message): Promise<boolean> {
    const state = await this.start(key);
    if (message.role === "toolResult") {
      const callId = typeof message.toolCallId === "string" ? message.toolCallId : undefined;
      const known = callId ? this.toolArgs.get(callId) : undefined;
      const tool = typeof message.toolName === "string" ? message.toolName : (known?.name ?? "tool");
      if (message.isError === true) return false;
      return this.recordTool(key, callId, tool, known?.args ?? {}, textOf(message.content));
    }
    if (message.role === "assistant") {
      for (const call of toolCallsOf(message.content)) this.toolArgs.set(call.id, { name: call.name, args: call.args });
    }
    if (message.role !== "user" && message.role !== "assistant") return false;
    const text = textOf(message.content).trim();
    if (text === "") return false;
    const role = message.role;
    const stamp = typeof message.timestamp === "number" || typeof message.timestamp === "string" ? String(message.timestamp) : "";
    const written = await this.client.call("page_write", {
      session_id: state.clawvmId,
      // the prompt orders pages of a type by id: a time (else turn) prefix keeps the conversation in order
      page_id: `oc/conv/${order(message.timestamp, state.turn)}-${digest(state.clawvmId, role, stamp, text)}`,
      op: "create",
      type: "conversation",
      content: `${role}: ${text}`,
      provenance: { source: role === "user" ? "user" : "model", ref: `ext:openclaw:${role}`, turn: state.turn },
      commit: "boundary",
    });
    return written.status === "staged" || written.status === "committed";
  }

  /** Record a tool's result once per call id (after_tool_call and the transcript both report it). */
  async recordTool(key: string, callId: string | undefined, tool: string, args: Record<string, unknown>, result: string): Promise<boolean> {
    if (callId && this.recordedCalls.has(callId)) return false;
    if (callId) this.recordedCalls.add(callId);
    const state = await this.start(key);
    await this.client.call("tool_execute", {
      session_id: state.clawvmId,
      tool,
      args,
      result,
      idempotent: this.idempotent.has(tool),
    });
    return true;
  }

  /** Before a tool runs: an idempotent repeat whose result memory still holds is answered from memory. */
  async beforeTool(key: string, callId: string | undefined, tool: string, args: Record<string, unknown>): Promise<string | undefined> {
    if (callId) this.toolArgs.set(callId, { name: tool, args });
    if (!this.idempotent.has(tool)) return undefined;
    const state = await this.start(key);
    const answer = await this.client.call("tool_execute", { session_id: state.clawvmId, tool, args, idempotent: true });
    if (answer.status !== "duplicate_signature" || typeof answer.stored_result !== "string") return undefined;
    if (callId) this.recordedCalls.add(callId);
    return answer.stored_result;
  }
}
