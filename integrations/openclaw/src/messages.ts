/** What the plugin reads from OpenClaw's agent messages (user, assistant with tool calls, tool results). */
import { createHash } from "node:crypto";

export interface ToolCallPart {
  id: string;
  name: string;
  args: Record<string, unknown>;
}

type Part = { type?: unknown; text?: unknown; id?: unknown; name?: unknown; arguments?: unknown };

function parts(content: unknown): Part[] {
  if (typeof content === "string") return [{ type: "text", text: content }];
  return Array.isArray(content) ? (content.filter((p) => p && typeof p === "object") as Part[]) : [];
}

/** The text of a message or a tool result: text parts joined; other parts named, not dumped. */
export function textOf(content: unknown): string {
  return parts(content)
    .map((p) => (p.type === "text" && typeof p.text === "string" ? p.text : p.type === "image" ? "[image]" : ""))
    .filter((t) => t !== "")
    .join("\n");
}

export function toolCallsOf(content: unknown): ToolCallPart[] {
  return parts(content).flatMap((p) =>
    p.type === "toolCall" && typeof p.id === "string" && typeof p.name === "string"
      ? [{ id: p.id, name: p.name, args: (p.arguments && typeof p.arguments === "object" ? p.arguments : {}) as Record<string, unknown> }]
      : [],
  );
}

/** A tool result from after_tool_call's `result` (an AgentToolResult, a string, or JSON). */
export function resultText(result: unknown): string {
  if (typeof result === "string") return result;
  if (result && typeof result === "object" && "content" in result) {
    const text = textOf((result as { content: unknown }).content);
    if (text !== "") return text;
  }
  return JSON.stringify(result ?? null);
}

export function digest(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\u0000")).digest("hex").slice(0, 16);
}

/** OpenClaw's session key as a clawvm session id (1-128 of A-Z a-z 0-9 . _ : -, letter or digit first). */
export function sessionIdFor(key: string): string {
  let id = key.replace(/[^A-Za-z0-9._:-]/g, "-");
  if (!/^[A-Za-z0-9]/.test(id)) id = `oc-${id}`;
  return id.length <= 128 ? id : `${id.slice(0, 111)}-${digest(key)}`;
}
