/** The plugin's settings (openclaw.plugin.json's configSchema), with defaults applied and checked once. */

export type Transport = "stdio" | "http";

export interface ClawvmConfig {
  transport: Transport;
  command: string;
  args: string[];
  env: Record<string, string>;
  url: string | undefined;
  token: string | undefined;
  projectId: string;
  memoryShare: number;
  sessionBudget: number;
  bootstrapFiles: string[];
  idempotentTools: string[];
  maxFileBytes: number;
}

export const DEFAULT_BOOTSTRAP_FILES = ["AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md", "TOOLS.md"];
export const DEFAULT_IDEMPOTENT_TOOLS = ["read", "web_fetch", "web_search", "memory_get", "memory_search"];

function strings(value: unknown, name: string, fallback: string[]): string[] {
  if (value === undefined) return fallback;
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new Error(`clawvm plugin: ${name} must be a list of strings`);
  }
  return value as string[];
}

function text(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "") throw new Error(`clawvm plugin: ${name} must be a non-empty string`);
  return value;
}

function number(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw new Error(`clawvm plugin: ${name} must be a number in [${min}, ${max}]`);
  }
  return value;
}

/** Defaults for what is missing; an error that names the setting for what is wrong. */
export function resolveConfig(raw: Record<string, unknown> | undefined, env = process.env): ClawvmConfig {
  const c = raw ?? {};
  const transport = c.transport ?? "stdio";
  if (transport !== "stdio" && transport !== "http") throw new Error('clawvm plugin: transport must be "stdio" or "http"');
  const url = text(c.url, "url");
  if (transport === "http" && url === undefined) throw new Error("clawvm plugin: transport http needs url");
  const envValue = c.env ?? {};
  if (typeof envValue !== "object" || envValue === null || Object.values(envValue).some((v) => typeof v !== "string")) {
    throw new Error("clawvm plugin: env must map names to strings");
  }
  return {
    transport,
    command: text(c.command, "command") ?? "clawvm-mcp",
    args: strings(c.args, "args", ["serve"]),
    env: envValue as Record<string, string>,
    url,
    token: text(c.token, "token") ?? env.CLAWVM_TOKEN,
    projectId: text(c.projectId, "projectId") ?? "default",
    memoryShare: number(c.memoryShare, "memoryShare", 0.25, 0.01, 1),
    sessionBudget: Math.floor(number(c.sessionBudget, "sessionBudget", 4000, 1, Number.MAX_SAFE_INTEGER)),
    bootstrapFiles: strings(c.bootstrapFiles, "bootstrapFiles", DEFAULT_BOOTSTRAP_FILES),
    idempotentTools: strings(c.idempotentTools, "idempotentTools", DEFAULT_IDEMPOTENT_TOOLS),
    maxFileBytes: Math.floor(number(c.maxFileBytes, "maxFileBytes", 65536, 1, Number.MAX_SAFE_INTEGER)),
  };
}
