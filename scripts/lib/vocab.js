// Convert llama3-tokenizer-js's vocabulary to tiktoken format, and optionally
// write token-id fixtures made with the package's own encoder.
//   node vocab.js BUNDLE.cjs OUT.tiktoken [FIXTURES.json]
'use strict';
const fs = require('fs');
const [bundle, out, fixtures] = process.argv.slice(2);
const tok = require(require('path').resolve(bundle)).llama3Tokenizer;

// GPT-2's byte <-> printable character map, which Hugging Face vocabularies use
const bs = [];
for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
for (let b = 0xae; b <= 0xff; b++) bs.push(b);
const cs = bs.slice();
let n = 0;
for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
const charToByte = new Map();
bs.forEach((b, i) => charToByte.set(String.fromCodePoint(cs[i]), b));

const N_REGULAR = 128000; // ids from 128000 on are special tokens, not BPE ranks
const lines = [];
for (let id = 0; id < N_REGULAR; id++) {
  const s = tok.vocabById[id];
  const bytes = [];
  for (const ch of s) {
    const b = charToByte.get(ch);
    if (b === undefined) throw new Error(`token ${id}: character ${ch} is not byte-mapped`);
    bytes.push(b);
  }
  lines.push(Buffer.from(bytes).toString('base64') + ' ' + id);
}
fs.writeFileSync(out, lines.join('\n') + '\n');

if (fixtures) {
  const strings = [
    '', ' ', '\n', 'Hello world!', 'The quick brown fox jumps over the lazy dog.',
    "I'm sure they'll say we've done it, won't they? I'D AGREE, YOU'RE RIGHT.",
    'Café déjà vu, naïve façade, über Straße.', 'ÀÉÎÕÜ àéîõü ñÑ çÇ', 'Ünïcödé ÇÄPS\'S',
    '日本語のテキストを分割します。', '中文分词测试：你好，世界！', '한국어 문장입니다.',
    'Привет, мир! Как дела?', 'مرحبا بالعالم', 'שלום עולם', 'γειά σου κόσμε', 'नमस्ते दुनिया', 'ไทย ภาษา',
    'Emoji: 😀🎉👍🏽 and 🇺🇸 flags', 'Numbers: 1234567 3.14159 2026-11-21 $1,234.56',
    '1 2 3 4 5 6 7 8 9 10 11 12 123 1234 12345 123456', '   leading spaces', 'trailing spaces   ',
    'tabs\tand\t\ttabs', 'line one\nline two\r\nline three\n\n\nend', 'mixed   \n  whitespace \t \n',
    'code: def f(x):\n    return x**2 + 1  # square\n', '<html><body class="x">Hi</body></html>',
    'email@example.com https://example.org/a?b=c&d=e', '!!!???...,,,;;; --- ***',
    'ﬁ ligature, ½ fraction, ² superscript', 'x\u00a0y non-breaking, zero\u200bwidth',
    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    "Flag if merchant category doesn't match customer's typical spending pattern",
    'txn_id: T000042\namount_usd: 1234.50\ncity: Bucharest\n', 'Joe\'s Market, Inc.', 'Bob\'s "Fast" Gas',
    'Café Lumière', '  \n\n  \t indented\n', "don't DON'T Don'T 's 'S 'll",
    // pieces longer than 128 bytes take the heap-based merge path
    'a'.repeat(300), 'ab'.repeat(200), 'Mississippi'.repeat(30), 'z'.repeat(4000),
    Array.from({ length: 700 }, (_, i) => String.fromCharCode(97 + ((i * 7919) % 26))).join(''),
    'éàü'.repeat(60), '1234567890'.repeat(40), '!?'.repeat(150),
  ];
  const cases = strings.map(text => JSON.stringify({ text, ids: tok.encode(text, { bos: false, eos: false }) }));
  fs.writeFileSync(fixtures, '{"source": ' +
    JSON.stringify('llama3-tokenizer-js 1.2.0 encode(text, {bos: false, eos: false}), via scripts/fetch-vocab --fixtures') +
    ',\n "cases": [\n  ' + cases.join(',\n  ') + '\n]}\n');
}
