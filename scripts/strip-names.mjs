// Moves the wasm's `name` custom section out of the deployed module:
//   node scripts/strip-names.mjs build/index_bg.wasm build/names/index_bg.wasm
// The first file is rewritten without the section (function names only serve stack traces
// and profiles; they were 265 KB of a 1.46 MB module, 68 KB of its 547 KB gzip); the second
// gets the module as it was, for CPU profiles with names (`scripts/bench.mjs` profiles it:
// its code section is byte for byte the deployed one's). Every other section is copied
// unchanged. wasm-opt's --strip-debug would re-encode the whole module instead.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const [input, named] = process.argv.slice(2);
if (!input || !named) {
  console.error('usage: strip-names.mjs MODULE.wasm NAMED-COPY.wasm');
  process.exit(2);
}
const bytes = readFileSync(input);
const magic = bytes.subarray(0, 8);
if (bytes.readUInt32LE(0) !== 0x6d736100) throw new Error(`${input}: not a wasm module`);

// An unsigned LEB128 at `at`: [value, next offset].
function leb(at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (at >= bytes.length || shift > 35) throw new Error(`${input}: a malformed number at ${at}`);
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, at];
  }
}

const kept = [magic];
let removed = 0;
for (let at = 8; at < bytes.length;) {
  const start = at;
  const id = bytes[at];
  const [size, body] = leb(at + 1);
  const end = body + size;
  if (end > bytes.length) throw new Error(`${input}: section at ${start} runs past the end`);
  let isName = false;
  if (id === 0) {
    const [len, nameAt] = leb(body);
    if (nameAt + len > end) throw new Error(`${input}: a custom section's name runs past it at ${start}`);
    isName = bytes.subarray(nameAt, nameAt + len).toString('latin1') === 'name';
  }
  if (isName) removed += end - start;
  else kept.push(bytes.subarray(start, end));
  at = end;
}
mkdirSync(dirname(named), { recursive: true });
writeFileSync(named, bytes);
if (removed > 0) writeFileSync(input, Buffer.concat(kept));
console.log(`strip-names: ${input} without its name section (${removed} bytes); named copy in ${named}`);
