// OpenClaw's own plugin loader, context-engine resolver and hook runner, found in the installed package by the
// names its bundler exports them under (the chunk file names are content hashes, so they are looked up).
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const dist = dirname(require.resolve("openclaw/plugin-sdk/core")).replace(/plugin-sdk$/, "");

/** Import `name` from the dist chunk that defines `function name(` and exports it. */
export async function internal(name) {
  for (const file of readdirSync(dist).filter((f) => f.endsWith(".mjs"))) {
    const text = readFileSync(join(dist, file), "utf8");
    if (!text.includes(`function ${name}(`)) continue;
    const exported = text.match(new RegExp(`\\b${name} as (\\w+)\\b`)) ?? text.match(new RegExp(`export \\{[^}]*\\b${name}\\b`));
    if (!exported) continue;
    const mod = await import(pathToFileURL(join(dist, file)).href);
    const fn = mod[exported[1] ?? name] ?? mod[name];
    if (typeof fn === "function") return fn;
  }
  throw new Error(`openclaw internals: ${name} not found in ${dist}`);
}
