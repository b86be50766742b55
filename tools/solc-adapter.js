#!/usr/bin/env node
// A tiny stand-in for native `solc` built on solcjs (npm `solc`), so that
// py-solc-x's compile_standard(solc_binary=...) can drive it. It answers the
// two invocations py-solc-x makes:
//   --version            -> "solc, the solidity compiler ...\nVersion: X"
//   --standard-json ...  -> compiler JSON on stdout (nothing else on stdout)
// Imports are read relative to --base-path (default: cwd) through
// --allow-paths / remappings given in the JSON input, like native solc.
"use strict";
const fs = require("fs");
const path = require("path");

const projectRoot = path.resolve(__dirname, "..");
const solc = require(path.join(projectRoot, "node_modules", "solc"));

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write(
    "solc, the solidity compiler commandline interface\nVersion: " + solc.version() + "\n"
  );
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  process.stderr.write("solc-adapter: only --version and --standard-json are supported\n");
  process.exit(2);
}
let basePath = process.cwd();
const bi = args.indexOf("--base-path");
if (bi >= 0 && args[bi + 1]) basePath = path.resolve(args[bi + 1]);

function findImports(importPath) {
  const candidate = path.resolve(basePath, importPath);
  const rel = path.relative(basePath, candidate);
  if (rel.startsWith("..") || path.isAbsolute(rel)) {
    return { error: "import outside the base path: " + importPath };
  }
  try {
    return { contents: fs.readFileSync(candidate, "utf8") };
  } catch (e) {
    return { error: "file not found: " + importPath };
  }
}

const input = fs.readFileSync(0, "utf8");
// solcjs may print a notice about SMT solvers on stdout; capture and drop it.
const realWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = () => true;
let out;
try {
  out = solc.compile(input, { import: findImports });
} finally {
  process.stdout.write = realWrite;
}
realWrite(out + "\n");
