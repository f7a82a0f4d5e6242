#!/usr/bin/env node
// Reproducible build of the OpenVPP contracts.
//
//   node contracts/compile.mjs          compile and write contracts/build/<Name>.json
//   node contracts/compile.mjs --check  compile, write nothing, exit 1 if any committed
//                                       build file is missing or differs
//
// Uses the solc-js pinned in package.json through standard JSON input. Source unit names are
// repository-relative ("contracts/src/OVPPToken.sol", "@openzeppelin/contracts/...") and never
// absolute paths, so the metadata hash appended to the bytecode, and hence the bytecode, is
// the same on every clone path and machine. Runs from any working directory.

import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import solc from "solc";

const CONTRACTS_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.dirname(CONTRACTS_DIR);
const BUILD_DIR = path.join(CONTRACTS_DIR, "build");
const NODE_MODULES = path.join(REPO_ROOT, "node_modules");

// Odyssey (go-ethereum 1.12 based) has no Cancun opcodes: pin the EVM version explicitly.
const EVM_VERSION = "shanghai";
const OPTIMIZER = { enabled: true, runs: 200 };

// Contract name -> source unit name (repository-relative, forward slashes).
const TARGETS = {
  OVPPToken: "contracts/src/OVPPToken.sol",
  USDStablecoin: "contracts/src/USDStablecoin.sol",
  OVPPForwarder: "contracts/src/OVPPForwarder.sol",
  OVPPRegistry: "contracts/src/OVPPRegistry.sol",
  RewardsDistributor: "contracts/src/RewardsDistributor.sol",
};

// Read a source as text with CRLF normalised to LF, so a checkout with autocrlf still
// produces the same metadata hash and bytecode.
function readSource(file) {
  return fs.readFileSync(file, "utf8").replace(/\r\n/g, "\n");
}

// OpenZeppelin is pinned at 5.4.0 on purpose: from 5.5 on, EIP712 -> MessageHashUtils ->
// Strings imports utils/Bytes.sol, whose assembly uses the Cancun-only `mcopy`, so no contract
// with permit or a forwarder compiles for shanghai. We compile the published sources unchanged
// (so a block explorer can verify them) rather than patch a newer release.

// Map a source unit name to a file on disk; only the two known roots are allowed.
function resolveUnit(unitName) {
  if (path.isAbsolute(unitName) || unitName.split("/").includes("..")) return null;
  if (unitName.startsWith("@openzeppelin/")) return path.join(NODE_MODULES, ...unitName.split("/"));
  if (unitName.startsWith("contracts/")) return path.join(REPO_ROOT, ...unitName.split("/"));
  return null;
}

function findImports(unitName) {
  const file = resolveUnit(unitName);
  if (file === null) return { error: `import not allowed (only @openzeppelin/... and contracts/...): ${unitName}` };
  try {
    const text = readSource(file);
    return { contents: text };
  } catch (err) {
    return { error: `cannot load ${unitName}: ${err.message}` };
  }
}

function compile() {
  const sources = {};
  for (const unitName of Object.values(TARGETS)) {
    sources[unitName] = { content: readSource(resolveUnit(unitName)) };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: OPTIMIZER,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const diagnostics = output.errors ?? [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  // Warnings inside the pinned OpenZeppelin sources are theirs to fix; show only ours.
  const ours = (d) => !(d.sourceLocation?.file ?? "").startsWith("@openzeppelin/");
  for (const d of diagnostics.filter((d) => d.severity !== "error" && ours(d))) {
    process.stderr.write(d.formattedMessage ?? `${d.severity}: ${d.message}\n`);
  }
  if (errors.length > 0) {
    for (const e of errors) process.stderr.write(e.formattedMessage ?? `error: ${e.message}\n`);
    process.stderr.write(`compile.mjs: ${errors.length} compiler error(s)\n`);
    process.exit(1);
  }

  const artifacts = {};
  for (const [contractName, sourceName] of Object.entries(TARGETS)) {
    const c = output.contracts?.[sourceName]?.[contractName];
    if (!c) {
      process.stderr.write(`compile.mjs: no output for ${sourceName}:${contractName}\n`);
      process.exit(1);
    }
    const bytecode = c.evm.bytecode.object;
    const deployedBytecode = c.evm.deployedBytecode.object;
    if (!bytecode || bytecode.includes("__$") || deployedBytecode.includes("__$")) {
      process.stderr.write(`compile.mjs: ${contractName} is abstract or needs library linking\n`);
      process.exit(1);
    }
    const artifact = {
      contractName,
      sourceName,
      compiler: {
        version: solc.version(),
        evmVersion: EVM_VERSION,
        optimizer: { enabled: OPTIMIZER.enabled, runs: OPTIMIZER.runs },
      },
      abi: c.abi,
      bytecode: `0x${bytecode}`,
      deployedBytecode: `0x${deployedBytecode}`,
    };
    artifacts[contractName] = JSON.stringify(artifact, null, 2) + "\n";
  }
  return artifacts;
}

function main(argv) {
  const check = argv.includes("--check");
  const unknown = argv.filter((a) => a !== "--check");
  if (unknown.length > 0) {
    process.stderr.write(`usage: node contracts/compile.mjs [--check]\nunknown argument(s): ${unknown.join(" ")}\n`);
    process.exit(2);
  }

  const artifacts = compile();

  if (check) {
    const problems = [];
    for (const [name, text] of Object.entries(artifacts)) {
      const rel = `contracts/build/${name}.json`;
      const file = path.join(BUILD_DIR, `${name}.json`);
      if (!fs.existsSync(file)) problems.push(`missing: ${rel}`);
      else if (fs.readFileSync(file, "utf8") !== text) problems.push(`differs: ${rel}`);
    }
    if (problems.length > 0) {
      for (const p of problems) process.stdout.write(`${p}\n`);
      process.stdout.write("build is stale: run `node contracts/compile.mjs` and commit contracts/build/\n");
      process.exit(1);
    }
    process.stdout.write(`build matches sources (${Object.keys(artifacts).length} contracts, solc ${solc.version()}, ${EVM_VERSION})\n`);
    return;
  }

  fs.mkdirSync(BUILD_DIR, { recursive: true });
  for (const [name, text] of Object.entries(artifacts)) {
    const file = path.join(BUILD_DIR, `${name}.json`);
    fs.writeFileSync(file, text);
    process.stdout.write(`wrote contracts/build/${name}.json\n`);
  }
}

main(process.argv.slice(2));
