// Random small weights in the byte-level BPE vocabulary files of bpe-fixtures.mjs, and llama.cpp's
// greedy tokens and logits on them (issue 21 item 5, second half). tests/test_cli.py
// (bpe_random_weights) rebuilds the same files without npm and compares etchsim's infer with them.
//   node bpe-weights-fixtures.mjs WORKDIR OUT.json
// For each of WORKDIR/bpe-llama-bpe.gguf and WORKDIR/bpe-gpt-2.gguf (written by bpe-fixtures.mjs:
// llama.embedding_length 8, feed_forward_length 16, head_count 1, block_count 1, context_length 64,
// rms epsilon 1e-5) this writes WORKDIR/bpe-<pre>-weights.gguf: the same metadata plus
// llama.attention.head_count_kv 1, llama.rope.dimension_count 8 and llama.vocab_size 128256, and
// these F32 tensors, in this order, each drawn in order from one splitmix64 stream (seed
// 0x2026120600000021; a draw is the output's top 24 bits / 2^24 * 2 - 1, times 0.5; a norm weight
// is 1 + 0.2 x draw): token_embd [8, 128256] (tied: no output.weight), output_norm [8],
// blk.0.attn_norm [8], attn_q, attn_k, attn_v, attn_output [8, 8], ffn_norm [8], ffn_gate,
// ffn_up [8, 16], ffn_down [16, 8] (GGUF order: ne0 first). Then llama.cpp (node-llama-cpp 3.22.1,
// CPU, F32 KV cache, flash attention off) generates 8 greedy tokens from a chat prompt tokenized
// with special-token parsing (BOS first once), and OUT.json keeps, for each step, the 8 highest logits and the
// logits of ids 0, 4099, 8198, ... (32 ids). Run by scripts/llama-fixtures; no network is used.
import {getLlama} from "node-llama-cpp";
import fs from "node:fs";
import crypto from "node:crypto";

const [work, out] = process.argv.slice(2);
const E = 8, FF = 16, NV = 128256, CTX = 64, STEPS = 8, SEED = 0x2026120600000021n, SCALE = 0.5;
const M = (1n << 64n) - 1n;
let st = SEED;
function draw() {
  st = (st + 0x9E3779B97F4A7C15n) & M;
  let z = st;
  z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & M;
  z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & M;
  z = z ^ (z >> 31n);
  return Number(z >> 40n) / 16777216 * 2 - 1;
}
const u32 = v => { const x = Buffer.alloc(4); x.writeUInt32LE(v); return x; };
const u64 = v => { const x = Buffer.alloc(8); x.writeBigUInt64LE(BigInt(v)); return x; };
const str = s => { const x = Buffer.from(s, "utf8"); return Buffer.concat([u64(x.length), x]); };
const kv = (key, type, raw) => Buffer.concat([str(key), u32(type), raw]);
const tensors = [["token_embd.weight", [E, NV]], ["output_norm.weight", [E]],
  ["blk.0.attn_norm.weight", [E]], ["blk.0.attn_q.weight", [E, E]], ["blk.0.attn_k.weight", [E, E]],
  ["blk.0.attn_v.weight", [E, E]], ["blk.0.attn_output.weight", [E, E]], ["blk.0.ffn_norm.weight", [E]],
  ["blk.0.ffn_gate.weight", [E, FF]], ["blk.0.ffn_up.weight", [E, FF]], ["blk.0.ffn_down.weight", [FF, E]]];
let off = 0;
const infos = [], datas = [];
for (const [name, ne] of tensors) {
  const n = ne.reduce((a, x) => a * x, 1), d = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) d.writeFloatLE(name.includes("norm") ? 1 + 0.2 * draw() : SCALE * draw(), i * 4);
  infos.push(Buffer.concat([str(name), u32(ne.length), ...ne.map(u64), u32(0), u64(off)]));
  const pad = (32 - (n * 4) % 32) % 32;
  datas.push(d, Buffer.alloc(pad));
  off += n * 4 + pad;
}
const data = Buffer.concat(datas);
const extra = [kv("llama.attention.head_count_kv", 4, u32(1)), kv("llama.rope.dimension_count", 4, u32(E)),
               kv("llama.vocab_size", 4, u32(NV))];
const sys = "You are a fraud analyst. Answer FLAG or OK.", rec = "amount_usd: 1234.50\ncity: Bucharest";
const runs = [
  {pre: "llama-bpe", prompt: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + sys + "<|eot_id|>" +
     "<|start_header_id|>user<|end_header_id|>\n\n" + rec + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
  {pre: "gpt-2", prompt: "<|im_start|>system\n" + sys + "<|im_end|>\n<|im_start|>user\n" + rec + "<|im_end|>\n<|im_start|>assistant\n"},
];
const llama = await getLlama({gpu: false, build: "never", skipDownload: true});
const fmt = x => Number(x.toPrecision(9));
const results = [];
for (const r of runs) {
  const b = fs.readFileSync(`${work}/bpe-${r.pre}.gguf`);
  const nKv = Number(b.readBigUInt64LE(16));
  let head = Buffer.concat([Buffer.from("GGUF"), u32(3), u64(tensors.length), u64(nKv + extra.length), b.subarray(24), ...extra, ...infos]);
  head = Buffer.concat([head, Buffer.alloc((32 - head.length % 32) % 32)]);
  const path = `${work}/bpe-${r.pre}-weights.gguf`;
  fs.writeFileSync(path, Buffer.concat([head, data]));
  const model = await llama.loadModel({modelPath: path});
  const ctx = await model.createContext({contextSize: CTX, batchSize: CTX, sequences: 1, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"});
  const seq = ctx.getSequence();
  // as llama.cpp's common_tokenize(add_special, parse_special) gives a prompt, but BOS once: the
  // llama-bpe prompt writes it, the gpt-2 file (add_bos_token true) adds it
  const promptIds = Array.from(model.tokenize(r.prompt, true));
  if (model.tokens.shouldPrependBosToken && promptIds[0] !== model.tokens.bos) promptIds.unshift(model.tokens.bos);
  const output = [], steps = [];
  const opts = {generateNext: {logits: true, token: true, options: {temperature: 0}}};
  let input = promptIds.map(t => [t, opts]);
  for (let step = 0; step < STEPS; step++) {
    const res = await seq.controlledEvaluate(input);
    const next = res[res.length - 1].next;
    const all = [...next.logits.entries()].sort((a, c) => c[1] - a[1]);
    steps.push({top: all.slice(0, 8).map(([t, v]) => [t, fmt(v)]),
                sampled: Array.from({length: 32}, (_, k) => fmt(next.logits.get(k * 4099)))});
    output.push(next.token);
    input = [[next.token, opts]];
  }
  results.push({pre: r.pre, prompt: r.prompt, prompt_ids: promptIds, output_ids: output, steps});
  await ctx.dispose();
  await model.dispose();
}
const doc = {source: "llama.cpp via node-llama-cpp 3.22.1 (prebuilt linux-x64 CPU build), F32 weights, F32 KV cache, " +
             "no flash attention, greedy; written by scripts/llama-fixtures (scripts/lib/bpe-weights-fixtures.mjs)",
  weights: {seed: "0x2026120600000021", generator: "splitmix64", scale: SCALE, norm: "1 + 0.2 x draw",
            tensors: tensors.map(([n, ne]) => ({name: n, ne})),
            data_sha256: crypto.createHash("sha256").update(data).digest("hex")},
  sampled_ids: "k * 4099 for k in 0..31", runs: results};
fs.writeFileSync(out, JSON.stringify(doc).replace(/,"runs":\[/, ',\n "runs": [\n  ').replace(/\},\{"pre"/g, '},\n  {"pre"') + '\n');
console.log(`bpe-weights-fixtures: ${results.map(r => r.pre + " " + r.output_ids.join(",")).join("; ")}`);
