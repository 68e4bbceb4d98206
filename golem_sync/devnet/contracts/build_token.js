// Regenerates Token.json (abi, bytecode, methodIdentifiers) from Token.sol with npm `solc`, offline.
// Usage (from this directory):
//   npm install --prefix /tmp/golem-solc --no-save --no-audit --no-fund solc@0.8.28
//   NODE_PATH=/tmp/golem-solc/node_modules node build_token.js
// The output is committed so that neither tests nor users need a compiler.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const source = fs.readFileSync(path.join(__dirname, "Token.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "Token.sol": { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "paris", // no PUSH0 etc.: runs on any chain yagna may point at
    outputSelection: { "*": { Token: ["abi", "evm.bytecode.object", "evm.methodIdentifiers"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const token = output.contracts["Token.sol"].Token;
const result = {
  contractName: "Token",
  compiler: "solc " + solc.version(),
  abi: token.abi,
  bytecode: "0x" + token.evm.bytecode.object,
  methodIdentifiers: token.evm.methodIdentifiers,
};
fs.writeFileSync(path.join(__dirname, "Token.json"), JSON.stringify(result, null, 2) + "\n");
console.log("wrote Token.json (" + token.evm.bytecode.object.length / 2 + " bytes of bytecode)");
