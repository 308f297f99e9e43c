// Byte-level BPE fixtures from llama.cpp on the Llama 3 vocabulary with its special tokens, under
// three pre-tokenizers: llama-bpe (Llama 3), gpt-2 and smollm.
//   node bpe-fixtures.mjs BUNDLE.cjs WORKDIR TOKENIZER_FIXTURES.json OUT.json
// BUNDLE.cjs is llama3-tokenizer-js 1.2.0's bundle (the npm package scripts/fetch-vocab reads): its
// 128,256 tokens (128,000 ranks in GPT-2 byte-to-character form, then 256 special tokens) and its
// 280,147 merges. For each pre-tokenizer this writes a vocabulary-only GGUF file (the tokenizer
// metadata and the llama.* keys llama.cpp reads before the tensors; no tensors) into WORKDIR, loads
// it through node-llama-cpp's prebuilt CPU build of llama.cpp and tokenizes every string, with
// special-token parsing on and off. The files differ from Llama 3's only where the test needs them:
//   llama-bpe  as Llama 3.1 instruct: BOS 128000, EOS 128009 (<|eot_id|>), add_bos_token absent
//   gpt-2      add_bos_token true (llama.cpp's default for gpt-2 is false); tokens 128002/128003
//              renamed <|im_start|>/<|im_end|> (control, for ChatML) and 128005 renamed <tool_call>
//              and typed user-defined (4), 128012 renamed <|im_start|>tool (control: it holds
//              <|im_start|>, so the longest match must win)
//   smollm     as gpt-2, pre-tokenizer smollm, add_bos_token false
// tests/test_tok.c (5.x) writes the same files from the tiktoken vocabulary (merges derived from the
// ranks as Hugging Face's TikTokenConverter does; this script checks that they are the package's)
// and compares etchsim's ids with these. Run by scripts/llama-fixtures; no network is needed or used.
import {getLlama} from "node-llama-cpp";
import fs from "node:fs";
import {createRequire} from "node:module";

const [bundle, work, tokFixtures, out] = process.argv.slice(2);
const tok = createRequire(import.meta.url)(bundle).llama3Tokenizer;
const N_RANKS = 128000, N_VOCAB = 128256;
if (tok.vocabById.length !== N_VOCAB) throw new Error(`${bundle}: ${tok.vocabById.length} tokens, expected ${N_VOCAB}`);

// GPT-2 byte <-> character map
const bs = [];
for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
for (let b = 0xae; b <= 0xff; b++) bs.push(b);
const cs = bs.slice();
let nx = 0;
for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + nx++); }
const charToByte = new Map();
bs.forEach((b, i) => charToByte.set(String.fromCodePoint(cs[i]), b));
const toBytes = s => Buffer.from([...s].map(ch => charToByte.get(ch)));

// the package's merges, in rank order, and the merges derived from the ranks (TikTokenConverter:
// every split of a token into two tokens, by the token's rank, then the parts' ranks)
const pkgMerges = [...tok.merges.entries()].sort((a, b) => a[1] - b[1]).map(e => e[0]);
const rankOf = new Map();
for (let id = 0; id < N_RANKS; id++) rankOf.set(toBytes(tok.vocabById[id]).toString("latin1"), id);
const derived = [];
for (let id = 0; id < N_RANKS; id++) {
  const s = [...tok.vocabById[id]];
  if (s.length < 2) continue;
  const local = [];
  for (let i = 1; i < s.length; i++) {
    const l = s.slice(0, i).join(""), r = s.slice(i).join("");
    const rl = rankOf.get(toBytes(l).toString("latin1")), rr = rankOf.get(toBytes(r).toString("latin1"));
    if (rl !== undefined && rr !== undefined) local.push([rl, rr, l + " " + r]);
  }
  local.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (const m of local) derived.push(m[2]);
}
let sameMerges = derived.length === pkgMerges.length;
for (let i = 0; sameMerges && i < derived.length; i++) sameMerges = derived[i] === pkgMerges[i];
console.log(`bpe-fixtures: ${pkgMerges.length} merges in the package; derived from the ranks: ${derived.length}, ` +
            (sameMerges ? "the same list" : "NOT the same list"));

const u32 = v => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const i32 = v => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; };
const u64 = v => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const f32 = v => { const b = Buffer.alloc(4); b.writeFloatLE(v); return b; };
const str = s => { const b = Buffer.from(s, "utf8"); return Buffer.concat([u64(b.length), b]); };
const strArr = a => { const parts = [u32(8), u64(a.length)]; for (const s of a) parts.push(str(s)); return Buffer.concat(parts); };

const CHATML = {128002: ["<|im_start|>", 3], 128003: ["<|im_end|>", 3], 128005: ["<tool_call>", 4],
                128012: ["<|im_start|>tool", 3]};
const VOCABS = [
  {pre: "llama-bpe", eos: 128009, addBos: null, rename: {}},
  {pre: "gpt-2", eos: 128001, addBos: true, rename: CHATML},
  {pre: "smollm", eos: 128001, addBos: false, rename: CHATML},
];

function writeGguf(path, v) {
  const tokens = tok.vocabById.slice(), types = tokens.map((_, id) => id < N_RANKS ? 1 : 3);
  for (const [id, [text, type]] of Object.entries(v.rename)) { tokens[id] = text; types[id] = type; }
  const kvs = [];
  const kv = (key, type, raw) => kvs.push(Buffer.concat([str(key), u32(type), raw]));
  // GGUF value types: 4 uint32, 5 int32, 6 float32, 7 bool, 8 string, 9 array
  kv("general.architecture", 8, str("llama"));
  kv("llama.context_length", 4, u32(64));
  kv("llama.embedding_length", 4, u32(8));
  kv("llama.block_count", 4, u32(1));
  kv("llama.feed_forward_length", 4, u32(16));
  kv("llama.attention.head_count", 4, u32(1));
  kv("llama.attention.layer_norm_rms_epsilon", 6, f32(1e-5));
  kv("tokenizer.ggml.model", 8, str("gpt2"));
  kv("tokenizer.ggml.pre", 8, str(v.pre));
  kv("tokenizer.ggml.tokens", 9, strArr(tokens));
  kv("tokenizer.ggml.token_type", 9, Buffer.concat([u32(5), u64(types.length), ...types.map(i32)]));
  kv("tokenizer.ggml.merges", 9, strArr(pkgMerges));
  kv("tokenizer.ggml.bos_token_id", 4, u32(128000));
  kv("tokenizer.ggml.eos_token_id", 4, u32(v.eos));
  if (v.addBos !== null) kv("tokenizer.ggml.add_bos_token", 7, Buffer.from([v.addBos ? 1 : 0]));
  fs.writeFileSync(path, Buffer.concat([Buffer.from("GGUF"), u32(3), u64(0), u64(kvs.length), ...kvs]));
}

const sys = "You are a fraud analyst. Answer FLAG or OK.";
const rec = "txn_id: T000042\namount_usd: 1234.50\ncity: Bucharest\n";
const strings = [
  // special tokens, alone, in text, broken, nested
  "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>",
  "Hello<|eot_id|>world", " <|eot_id|> x ", "<|eot_id|><|eot_id|>", "<|eot_id", "<|eot_id|", "<|<|eot_id|>|>",
  "<|reserved_special_token_0|><|reserved_special_token_247|><|reserved_special_token_248|>",
  "<|python_tag|>print(1)<|eom_id|>", "<|finetune_right_pad_id|>", "<|end_of_text|>\n",
  "<|im_start|>user\nhi<|im_end|>\n", "<|im_start|>tool\n{}<|im_end|>", "<|im_start|>toolbox", "<|im_start|>too", "<tool_call>{\"a\": 1}</tool_call>", "x<tool_call>y",
  // chat-formatted prompts: Llama 3.1 instruct and ChatML
  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + sys + "<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\n" + rec + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  "<|start_header_id|>assistant<|end_header_id|>\n\nOK<|eot_id|>FLAG",
  "<|im_start|>system\n" + sys + "<|im_end|>\n<|im_start|>user\n" + rec + "<|im_end|>\n<|im_start|>assistant\n",
  // whitespace
  "\n\n", "a\n\nb", "\r\n", "a\r\nb\r\n\r\nc", "\r", "x\ry", "  ", "   ", "a  b", "a   b", "a \n b", " \n\n ",
  "\t\tindented\n\t\t\tmore", "    def f(x):\n        return x\n", "line  \n  line", "end \n", "\n \n", " a", "  a",
  "a\u0085b", "x\ufeffy", "a\u0085\u0085b", "x \u0085\u0085 y", "x\ufeff\ufeffy", "a \ufeff\ufeff b", "a\u001cb", "a\u3000b", "\u00a0\u00a0x",
  // digits
  "1", "12", "123", "1234", "12345678901", "3.14159", " 2026-12-06", "a1b22c333d4444", "$1,234.56", "١٢٣ ٤٥٦",
  // contractions and case
  "I'M DON'T WE'LL", "it's we're they've I'd", "'s 'S", "rock'n'roll",
  // non-Latin
  "日本語のテキスト", "中文分词测试：你好，世界！", "Привет, мир!", "مرحبا بالعالم", "नमस्ते दुनिया", "한국어 문장입니다.",
  "Emoji: 😀🎉👍🏽 🇺🇸", "Ünïcödé ÇÄPS'S", "γειά σου κόσμε",
];
for (const c of JSON.parse(fs.readFileSync(tokFixtures, "utf8")).cases)
  if (!strings.includes(c.text)) strings.push(c.text);

const llama = await getLlama({gpu: false, build: "never", skipDownload: true});
const vocabs = {}, ids = strings.map(() => ({})), plain = strings.map(() => ({}));
for (const v of VOCABS) {
  const path = `${work}/bpe-${v.pre}.gguf`;
  writeGguf(path, v);
  const model = await llama.loadModel({modelPath: path, vocabOnly: true});
  vocabs[v.pre] = {bos: model.tokens.bos, eos: model.tokens.eos, add_bos: model.tokens.shouldPrependBosToken,
                   add_eos: model.tokens.shouldAppendEosToken, eos_token_id: v.eos, add_bos_token: v.addBos,
                   renamed: v.rename};
  strings.forEach((s, i) => {
    ids[i][v.pre] = Array.from(model.tokenize(s, true));
    plain[i][v.pre] = Array.from(model.tokenize(s, false));
  });
  await model.dispose();
}
const cases = strings.map((text, i) => ({text, special: ids[i], plain: plain[i]}));
const lines = ['{"source": ' + JSON.stringify("llama.cpp via node-llama-cpp 3.22.1 (prebuilt linux-x64 CPU build), vocabulary " +
               "only, tokenize(text, true) (special) and tokenize(text, false) (plain), no BOS/EOS added; written by " +
               "scripts/llama-fixtures (scripts/lib/bpe-fixtures.mjs)") + ',',
  ' "merges": ' + JSON.stringify({count: pkgMerges.length, derived_from_ranks_equal: sameMerges}) + ',',
  ' "vocabs": ' + JSON.stringify(vocabs) + ',',
  ' "tokenize": [', cases.map(c => '  ' + JSON.stringify(c)).join(',\n'), ' ]}'];
fs.writeFileSync(out, lines.join('\n') + '\n');
console.log(`bpe-fixtures: ${cases.length} strings x ${VOCABS.length} pre-tokenizers`);
