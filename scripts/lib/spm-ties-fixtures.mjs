// A SentencePiece vocabulary whose merges tie in score, and llama.cpp's token ids for strings
// where the tie-break decides the tokens (llama.cpp merges the leftmost of equal-score pairs
// first). stories260K's scores are all distinct, so its fixtures never exercise a tie.
//   node spm-ties-fixtures.mjs WORK.gguf OUT.json
// Writes the vocabulary as a GGUF file (tokenizer metadata and the llama.* keys llama.cpp reads
// before the tensors; no tensors), loads it vocabulary-only through node-llama-cpp's prebuilt
// CPU build of llama.cpp, and writes the vocabulary and the ids to OUT.json, which
// tests/test_tok.c (4.x) compares with its own copy of the vocabulary, its hand-derived ids and
// etchsim's tokenizer. Run by scripts/llama-fixtures; no network is needed or used.
import {getLlama} from "node-llama-cpp";
import fs from "node:fs";

const [ggufPath, out] = process.argv.slice(2);
// ids: 0 <unk>, 1 <s>, 2 </s>, 3 + b the byte token <0xBB>, then these pieces from 259 on
const pieces = [["\u2581", -10], ["a", -10], ["b", -10], ["c", -10], ["d", -10],
  ["ab", -5], ["bc", -5], ["cd", -5], ["abc", -3], ["\u2581a", -5], ["aa", -5], ["da", -4]];
const strings = ["abc", "bcd", "abcd", "aaab", "ab cd", "abx", "bcab", "cda",
  "", " ", "a", "aaaa", "abcabc", "bcbcbc", "dabcd", "cdab", "a b c d", "abc  abcd", "xyz", "abcdabcdaab"];

const tokens = ["<unk>", "<s>", "</s>"], scores = [0, 0, 0], types = [2, 3, 3];
for (let b = 0; b < 256; b++) {
  tokens.push("<0x" + b.toString(16).toUpperCase().padStart(2, "0") + ">");
  scores.push(0);
  types.push(6);
}
for (const [p, s] of pieces) { tokens.push(p); scores.push(s); types.push(1); }

const u32 = v => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const i32 = v => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; };
const u64 = v => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const f32 = v => { const b = Buffer.alloc(4); b.writeFloatLE(v); return b; };
const str = s => { const b = Buffer.from(s, "utf8"); return Buffer.concat([u64(b.length), b]); };
const kvs = [];
const kv = (key, type, raw) => kvs.push(Buffer.concat([str(key), u32(type), raw]));
// GGUF value types: 4 uint32, 5 int32, 6 float32, 8 string, 9 array
kv("general.architecture", 8, str("llama"));
kv("llama.context_length", 4, u32(64));
kv("llama.embedding_length", 4, u32(8));
kv("llama.block_count", 4, u32(1));
kv("llama.feed_forward_length", 4, u32(16));
kv("llama.attention.head_count", 4, u32(1));
kv("llama.attention.layer_norm_rms_epsilon", 6, f32(1e-5));
kv("tokenizer.ggml.model", 8, str("llama"));
kv("tokenizer.ggml.tokens", 9, Buffer.concat([u32(8), u64(tokens.length), ...tokens.map(str)]));
kv("tokenizer.ggml.scores", 9, Buffer.concat([u32(6), u64(scores.length), ...scores.map(f32)]));
kv("tokenizer.ggml.token_type", 9, Buffer.concat([u32(5), u64(types.length), ...types.map(i32)]));
kv("tokenizer.ggml.bos_token_id", 4, u32(1));
kv("tokenizer.ggml.eos_token_id", 4, u32(2));
kv("tokenizer.ggml.unknown_token_id", 4, u32(0));
fs.writeFileSync(ggufPath, Buffer.concat([Buffer.from("GGUF"), u32(3), u64(0), u64(kvs.length), ...kvs]));

const llama = await getLlama({gpu: false, build: "never", skipDownload: true});
const model = await llama.loadModel({modelPath: ggufPath, vocabOnly: true});
const cases = strings.map(text => ({text, ids: Array.from(model.tokenize(text))}));
// control (<s>, </s>) and unknown (<unk>) tokens written in the text, with special-token parsing on:
// the text is split on them, and the text after one gets SentencePiece's space again
const specialStrings = ["<s>abc</s>", "ab<s>cd", " <s> a", "<unk>", "a</s>", "</s></s>", "<s", "abc <s>bcd", "<s><s>a b"];
const special = specialStrings.map(text => ({text, ids: Array.from(model.tokenize(text, true))}));
const lines = ['{"source": ' + JSON.stringify("llama.cpp via node-llama-cpp 3.22.1 (prebuilt linux-x64 CPU build), " +
               "vocabulary only; written by scripts/llama-fixtures (scripts/lib/spm-ties-fixtures.mjs)") + ',',
  ' "vocab": {"pieces_from": 259, "pieces": ' + JSON.stringify(pieces.map(p => p[0])) + ',',
  '           "scores": ' + JSON.stringify(pieces.map(p => p[1])) + '},',
  ' "tokenize": [', cases.map(c => '  ' + JSON.stringify(c)).join(',\n'), ' ],',
  ' "tokenize_special": [', special.map(c => '  ' + JSON.stringify(c)).join(',\n'), ' ]}'];
fs.writeFileSync(out, lines.join('\n') + '\n');
console.log(`spm-ties-fixtures: ${cases.length} strings`);
