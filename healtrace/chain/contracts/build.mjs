#!/usr/bin/env node
// Compile HealTrace's Solidity contracts into JSON artifacts, deterministically.
//
//   node healtrace/chain/contracts/build.mjs OUT_DIR
//
// Every `*.sol` file beside this script is compiled with the pinned npm `solc` through its
// standard-JSON API; imports such as `@openzeppelin/contracts/...` are read from node_modules.
// For each contract defined in those files, OUT_DIR/<Name>.json gets the ABI, creation and
// runtime bytecode, the compiler version and the settings. Keys are sorted and files end in a
// newline, so the same sources and packages give byte-identical artifacts (`make
// contracts-check` diffs a fresh build against the committed one). Stale `*.json` files in
// OUT_DIR are removed. Any compiler error or warning fails the build.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const SOLC_VERSION = "0.8.37";
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
};

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..", "..");
const nodeModules = join(root, "node_modules");
const require = createRequire(join(root, "package.json"));

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(1);
}

function loadSolc() {
  let solc;
  try {
    solc = require("solc");
  } catch (err) {
    fail(`cannot load npm solc (${err.code ?? err.message}); run \`npm ci\` or \`make contracts\``);
  }
  const version = solc.version();
  if (!version.startsWith(`${SOLC_VERSION}+`)) {
    fail(`solc ${version} is installed, package.json pins ${SOLC_VERSION}; run \`npm ci\``);
  }
  return solc;
}

// Source unit names are paths relative to the repository root with forward slashes, so the
// metadata hash embedded in the bytecode does not depend on where the checkout lives.
function sourceName(path) {
  return relative(root, path).split(sep).join("/");
}

function findImport(name) {
  if (name.includes("..") || name.startsWith("/")) {
    return { error: `import ${name}: only node_modules packages may be imported` };
  }
  const path = join(nodeModules, name);
  if (!existsSync(path)) {
    return { error: `import ${name}: not found in node_modules (run \`npm ci\`)` };
  }
  return { contents: readFileSync(path, "utf8") };
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys(value[key])]),
    );
  }
  return value;
}

function main() {
  const outDir = process.argv[2];
  if (!outDir || process.argv.length > 3) fail("usage: node build.mjs OUT_DIR");
  const solc = loadSolc();

  const files = readdirSync(here)
    .filter((f) => f.endsWith(".sol"))
    .sort();
  if (files.length === 0) fail(`no .sol files in ${here}`);
  const sources = Object.fromEntries(
    files.map((f) => [sourceName(join(here, f)), { content: readFileSync(join(here, f), "utf8") }]),
  );
  const input = {
    language: "Solidity",
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };

  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const diagnostics = output.errors ?? [];
  for (const d of diagnostics) console.error(d.formattedMessage ?? d.message);
  if (diagnostics.some((d) => d.severity === "error" || d.severity === "warning")) {
    fail("compilation failed (warnings count as errors)");
  }

  const artifacts = new Map();
  for (const name of Object.keys(sources)) {
    for (const [contractName, contract] of Object.entries(output.contracts?.[name] ?? {})) {
      if (artifacts.has(contractName)) fail(`two contracts are named ${contractName}`);
      artifacts.set(contractName, {
        contractName,
        sourceName: name,
        compiler: { name: "solc", version: solc.version() },
        settings: SETTINGS,
        abi: contract.abi,
        bytecode: `0x${contract.evm.bytecode.object}`,
        deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
      });
    }
  }

  mkdirSync(outDir, { recursive: true });
  for (const stale of readdirSync(outDir)) {
    if (stale.endsWith(".json") && !artifacts.has(stale.slice(0, -".json".length))) {
      rmSync(join(outDir, stale));
    }
  }
  for (const [contractName, artifact] of artifacts) {
    const text = `${JSON.stringify(sortKeys(artifact), null, 2)}\n`;
    writeFileSync(join(outDir, `${contractName}.json`), text);
  }
  console.log(`compiled ${[...artifacts.keys()].join(", ")} into ${outDir}`);
}

main();
