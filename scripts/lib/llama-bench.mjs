// llama.cpp's decode speed on a GGUF file (node-llama-cpp's prebuilt CPU build), for scripts/bench-functional.
//   node llama-bench.mjs MODEL.gguf THREADS GENERATE PROMPT_IDS(comma-separated)
// Loads MODEL (not timed), evaluates the prompt ids in one batch (timed apart: prompt_s), then generates
// GENERATE greedy tokens one at a time, each fed back as the next input; decode_s is the wall time of those
// single-token evaluations (logits computed, greedy sample in llama.cpp's sampler, no logits copied out).
// The thread count is both the ideal and the minimum (llama.cpp's n_threads and n_threads_batch),
// flash attention off, llama.cpp's default F16 KV cache. Prints one JSON object.
import {getLlama} from "node-llama-cpp";

const [modelPath, threadsArg, genArg, idsArg] = process.argv.slice(2);
const threads = Number(threadsArg), gen = Number(genArg), prompt = idsArg.split(",").map(Number);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, maxThreads: threads,
                              logLevel: "error"});
const model = await llama.loadModel({modelPath});
const ctx = await model.createContext({contextSize: prompt.length + gen + 16, batchSize: prompt.length + 1,
                                       sequences: 1, threads: {ideal: threads, min: threads}, flashAttention: false});
const seq = ctx.getSequence();
const opts = {generateNext: {token: true, options: {temperature: 0}}};
const now = () => Number(process.hrtime.bigint()) / 1e9;
let t = now();
let res = await seq.controlledEvaluate(prompt.map((id, i) => i === prompt.length - 1 ? [id, opts] : id));
const promptS = now() - t;
const output = [res[res.length - 1].next.token];
t = now();
for (let k = 1; k <= gen; k++) {
  res = await seq.controlledEvaluate([[output[output.length - 1], opts]]);
  output.push(res[res.length - 1].next.token);
}
const decodeS = now() - t;
console.log(JSON.stringify({decode_s: decodeS, decode_tokens: gen, prompt_s: promptS, prompt_tokens: prompt.length,
                            threads: ctx.currentThreads, output_ids: output, cpu_variant: llama.cpuMathCores ?? null}));
await ctx.dispose();
await model.dispose();
