// Compiles contracts/src/*.sol with solc-js (standard JSON) and writes one
// artifact per deployable contract to contracts/artifacts/<Name>.json:
//   {"abi", "bytecode", "compiler": {"settings", "version"}, "contractName"}
// with sorted keys, two-space indent and a trailing newline, so that the same
// sources always give byte-identical files.
//
//   node contracts/compile.mjs           write the artifacts
//   node contracts/compile.mjs --check   compile and compare with the committed
//                                        artifacts; exit 1 when they differ
import { createRequire } from "node:module";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC_DIR = join(HERE, "src");
const OUT_DIR = join(HERE, "artifacts");

// The contracts that get an artifact (the interface file gets none).
const CONTRACTS = ["AuthRegistry", "Proposals", "Petitions", "Reports"];

// The platform's settings (see docs/devnet.md). 0.8.20 knows no "cancun";
// shanghai code runs unchanged on a cancun chain.
const SETTINGS = {
  evmVersion: "shanghai",
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
};

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]),
    );
  }
  return value;
}

function render(obj) {
  return JSON.stringify(sortKeys(obj), null, 2) + "\n";
}

function compile() {
  const sources = {};
  for (const file of readdirSync(SRC_DIR).filter((f) => f.endsWith(".sol")).sort()) {
    sources[`src/${file}`] = { content: readFileSync(join(SRC_DIR, file), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length > 0) {
    process.stderr.write(`solc: ${errors.length} error(s)\n`);
    process.exit(1);
  }
  const artifacts = {};
  for (const name of CONTRACTS) {
    const unit = output.contracts[`src/${name}.sol`];
    if (!unit || !unit[name]) {
      process.stderr.write(`solc produced no contract ${name} in src/${name}.sol\n`);
      process.exit(1);
    }
    artifacts[name] = render({
      contractName: name,
      abi: unit[name].abi,
      bytecode: "0x" + unit[name].evm.bytecode.object,
      compiler: { version: solc.version(), settings: SETTINGS },
    });
  }
  return artifacts;
}

const check = process.argv.includes("--check");
const artifacts = compile();

if (check) {
  const stale = [];
  for (const [name, text] of Object.entries(artifacts)) {
    const path = join(OUT_DIR, `${name}.json`);
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(`${name}.json`);
  }
  if (stale.length > 0) {
    process.stderr.write(
      `contracts/artifacts differ from a fresh compile: ${stale.join(", ")}\n` +
        "run `node contracts/compile.mjs` and commit the result\n",
    );
    process.exit(1);
  }
  process.stdout.write(`contracts/artifacts are up to date (solc ${solc.version()})\n`);
} else {
  mkdirSync(OUT_DIR, { recursive: true });
  for (const [name, text] of Object.entries(artifacts)) {
    writeFileSync(join(OUT_DIR, `${name}.json`), text);
  }
  process.stdout.write(
    `wrote ${Object.keys(artifacts).length} artifacts to contracts/artifacts (solc ${solc.version()})\n`,
  );
}
