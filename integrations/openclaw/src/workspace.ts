/** The workspace's bootstrap files as hard-pinned clawvm bootstrap pages (one page per file). Only regular files
 * directly in the workspace are read, opened without following links: a symlinked AGENTS.md is refused, never sent. */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { basename, join } from "node:path";

export interface BootstrapPage {
  page_id: string;
  content: string;
  type: "bootstrap";
  scope: "project";
  provenance: { source: "harness"; ref: string; turn: number };
}

export interface Refused {
  file: string;
  reason: string;
}

export interface WorkspaceBootstrap {
  pages: BootstrapPage[];
  /** Names of the files the engine supplies (OpenClaw must not inject them again). */
  supplied: string[];
  refused: Refused[];
}

export function pageIdFor(file: string): string {
  const stem = basename(file).replace(/\.md$/i, "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  return `oc/bootstrap/${stem || "file"}`;
}

async function readRegular(path: string, maxBytes: number): Promise<string | Refused> {
  const file = basename(path);
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { file, reason: "missing" };
    if (code === "ELOOP") return { file, reason: `${file} is a symbolic link; only regular files are read` };
    return { file, reason: `${file} cannot be opened: ${code ?? String(error)}` };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return { file, reason: `${file} is not a regular file` };
    if (info.size > maxBytes) return { file, reason: `${file} is ${info.size} bytes, over the ${maxBytes}-byte cap` };
    const text = (await handle.readFile({ encoding: "utf8" })).replace(/^\uFEFF/, "");
    return text.trim() === "" ? { file, reason: `${file} is empty` } : text;
  } finally {
    await handle.close();
  }
}

export async function readBootstrap(workspaceDir: string, files: string[], maxBytes: number): Promise<WorkspaceBootstrap> {
  const out: WorkspaceBootstrap = { pages: [], supplied: [], refused: [] };
  for (const file of files) {
    if (file !== basename(file)) {
      out.refused.push({ file, reason: `${file} is not a file name directly in the workspace` });
      continue;
    }
    const text = await readRegular(join(workspaceDir, file), maxBytes);
    if (typeof text !== "string") {
      if (text.reason !== "missing") out.refused.push(text);
      continue;
    }
    out.pages.push({
      page_id: pageIdFor(file),
      content: text.trimEnd(),
      type: "bootstrap",
      scope: "project",
      provenance: { source: "harness", ref: `ext:openclaw:${file}`, turn: 0 },
    });
    out.supplied.push(file);
  }
  return out;
}
