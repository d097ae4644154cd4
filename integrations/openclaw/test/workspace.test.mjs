// The bootstrap files the plugin sends as pages: regular files directly in the workspace only. A symlinked
// AGENTS.md (to /etc/passwd) is refused, never sent, and so left to OpenClaw's own guarded loading.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readBootstrap } from "../dist/workspace.js";

test("symlinks, directories, oversized and missing files are not sent as bootstrap pages", async () => {
  const ws = mkdtempSync(join(tmpdir(), "clawvm-openclaw-ws-"));
  symlinkSync("/etc/passwd", join(ws, "AGENTS.md"));
  writeFileSync(join(ws, "SOUL.md"), "# SOUL.md\n\nBe kind.\n");
  mkdirSync(join(ws, "TOOLS.md"));
  writeFileSync(join(ws, "USER.md"), "x".repeat(2000));
  const got = await readBootstrap(ws, ["AGENTS.md", "SOUL.md", "TOOLS.md", "USER.md", "IDENTITY.md", "../x.md"], 1000);
  assert.deepEqual(got.supplied, ["SOUL.md"]);
  assert.deepEqual(got.pages.map((p) => [p.page_id, p.content, p.type, p.scope]), [["oc/bootstrap/soul", "# SOUL.md\n\nBe kind.", "bootstrap", "project"]]);
  const reasons = Object.fromEntries(got.refused.map((r) => [r.file, r.reason]));
  assert.match(reasons["AGENTS.md"], /symbolic link/);
  assert.match(reasons["TOOLS.md"], /not a regular file/);
  assert.match(reasons["USER.md"], /2000 bytes, over the 1000-byte cap/);
  assert.match(reasons["../x.md"], /not a file name directly in the workspace/);
  assert.ok(!("IDENTITY.md" in reasons), "a missing file is not a refusal");
  assert.ok(!got.pages.some((p) => p.content.includes("root:")));
});
