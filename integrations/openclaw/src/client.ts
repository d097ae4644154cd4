/** One MCP connection to clawvm-mcp (official TypeScript client), opened on first use and shared by the engine
 * and the hooks; every tool answer is the server's structured result, and a tool error becomes an exception. */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { ClawvmConfig } from "./config.js";

export type Json = Record<string, unknown>;

export class ClawvmClient {
  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;

  constructor(private readonly config: ClawvmConfig) {}

  private async open(): Promise<Client> {
    const client = new Client({ name: "openclaw-clawvm", version: "0.1.0" });
    if (this.config.transport === "http") {
      const headers: Record<string, string> = {};
      if (this.config.token) headers.Authorization = `Bearer ${this.config.token}`;
      await client.connect(
        new StreamableHTTPClientTransport(new URL(this.config.url as string), { requestInit: { headers } }),
      );
    } else {
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
      await client.connect(
        new StdioClientTransport({
          command: this.config.command,
          args: this.config.args,
          env: { ...env, ...this.config.env },
          stderr: "inherit",
        }),
      );
    }
    this.client = client;
    return client;
  }

  private async connected(): Promise<Client> {
    if (this.client) return this.client;
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Call a clawvm-mcp tool and return its structured result. */
  async call(name: string, args: Json): Promise<Json> {
    const client = await this.connected();
    const result = await client.callTool({ name, arguments: args });
    const content = Array.isArray(result.content) ? result.content : [];
    const textOf = (): string =>
      content.map((c: { type?: string; text?: string }) => (c.type === "text" ? (c.text ?? "") : "")).join("\n");
    if (result.isError) throw new Error(`clawvm-mcp ${name}: ${textOf()}`);
    if (result.structuredContent && typeof result.structuredContent === "object") {
      return result.structuredContent as Json;
    }
    return JSON.parse(textOf()) as Json;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close();
  }
}
