// Reference fixtures from llama.cpp (through node-llama-cpp's prebuilt CPU
// build) for stories260K.gguf: token ids of varied strings, and for a few
// prompts the greedy continuation with the raw logits of every position.
//   node llama-fixtures.mjs MODEL.gguf OUT.json
// Run by scripts/llama-fixtures; no network is needed or used.
import {getLlama} from "node-llama-cpp";
import fs from "node:fs";
import crypto from "node:crypto";

const [modelPath, out] = process.argv.slice(2);
const GENERATE = 24;
const strings = [
  "Once upon a time", "", " ", "  ", "a", "Hello world!", "The cat sat on the mat.",
  "Lily and Tom went to the park. They played on the swing.",
  "\"Can I have it?\" she asked. \"No,\" said Mom.",
  "one\ntwo\n\nthree", "tabs\tand  double  spaces", "   leading", "trailing   ",
  "Numbers: 1, 22, 333 and 2026-11-22.", "UPPER lower MiXeD", "don't won't it's",
  "Café déjà vu", "naïve façade", "日本語", "Привет, мир", "Emoji 😀🎉", "x\u00a0y",
  "a-b_c/d\\e", "(1+2)*3=9; 10%", "<s> is not special here </s>", "▁already▁escaped",
  "The end. The End. THE END.", "happy happier happiest happily unhappy",
  "She said: 'Let's go!'", "abcdefghijklmnopqrstuvwxyz", "zzzzzzzzzzzzzzzzzzzz",
  "Once upon a time, there was a little girl named Lily.", "\n", "?!",
];
const prompts = ["Once upon a time", "Tom had a big red ball", "The sun was", "One day, a little dog"];

const llama = await getLlama({gpu: false, build: "never", skipDownload: true});
const model = await llama.loadModel({modelPath});
const fmt = x => Number(x.toPrecision(9));
const logitsArray = m => { const a = new Array(model.tokens.length ?? 512).fill(0);
  for (const [t, v] of m) a[t] = fmt(v); return a; };

const gen = [];
for (const text of prompts) {
  // F32 keys and values and no flash attention: llama.cpp's default F16 KV cache,
  // and its CPU flash-attention kernel (which rounds through F16), move logits by ~1e-2
  const ctx = await model.createContext({contextSize: 256, batchSize: 256, sequences: 1, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"});
  const seq = ctx.getSequence();
  const prompt = [model.tokens.bos, ...model.tokenize(text)];
  const logits = [], output = [];
  let input = prompt.map(t => [t, {generateNext: {logits: true, token: true, options: {temperature: 0}}}]);
  for (let step = 0; step < GENERATE; step++) {
    const res = await seq.controlledEvaluate(input);
    for (const r of res) logits.push(logitsArray(r.next.logits));
    const next = res[res.length - 1].next.token;
    output.push(next);
    if (next === model.tokens.eos) break;
    input = [[next, {generateNext: {logits: true, token: true, options: {temperature: 0}}}]];
  }
  gen.push({text, prompt_ids: prompt, output_ids: output,
            output_text: model.detokenize(output),
            full_text: model.detokenize([...prompt.slice(1), ...output]), logits});
  await ctx.dispose();
}
const sha = crypto.createHash("sha256").update(fs.readFileSync(modelPath)).digest("hex");
const doc = {
  source: "llama.cpp via node-llama-cpp 3.22.1 (prebuilt linux-x64 CPU build), F32 KV cache, " +
          "no flash attention, greedy (temperature 0); written by scripts/llama-fixtures",
  model_sha256: sha,
  n_vocab: model.tokens.length ?? 512,
  tokenize: strings.map(text => ({text, ids: model.tokenize(text)})),
  generate: gen,
};
const lines = ['{"source": ' + JSON.stringify(doc.source) + ',',
  ' "model_sha256": ' + JSON.stringify(sha) + ',',
  ' "tokenize": [', doc.tokenize.map(c => '  ' + JSON.stringify(c)).join(',\n'), ' ],',
  ' "generate": [', gen.map(g => '  ' + JSON.stringify(g)).join(',\n'), ' ]}'];
fs.writeFileSync(out, lines.join('\n') + '\n');
console.log(`llama-fixtures: ${strings.length} strings, ${gen.length} prompts, ` +
            `${gen.reduce((n, g) => n + g.logits.length, 0)} logit positions`);
