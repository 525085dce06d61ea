// tokenize_hf.js -- the peer of bench_tokenize.c part 2: Hugging Face
// tokenizers (npm tokenizers@0.23.2, the library that made the fixtures)
// encoding the same corpus, one text at a time, with the same folders'
// tokenizer.json. (sentence-transformers' strip/lowercase is not applied
// here; it costs little and changes few texts.)
//   cd bench && npm install tokenizers@0.23.2
//   node bench/tokenize_hf.js [-m MB] [-f FIXTURES]
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
const path = require('path');

let mb = 4, fix = path.join(__dirname, '../../shared/fixtures');
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '-m') mb = parseFloat(process.argv[++i]);
  else if (process.argv[i] === '-f') fix = process.argv[++i];
}
const sents = JSON.parse(fs.readFileSync(path.join(fix, 'sentences-2.json'), 'utf8'));
const texts = [];
let total = 0;
while (total < mb * 1e6)
  for (const s of sents) {
    if (total >= mb * 1e6) break;
    texts.push(s);
    total += Buffer.byteLength(s);
  }
const models = ['tiny-roberta-bpe', 'tiny-qwen3-lasttoken', 'tiny-modernbert',
                'tiny-me5-precompiled', 'tiny-st5-dense', 'tiny-bge-lowercase'];
(async () => {
  console.log(`corpus: ${texts.length} texts, ${(total / 1e6).toFixed(2)} MB`);
  for (const m of models) {
    const tok = Tokenizer.fromString(fs.readFileSync(
      path.join(fix, 'hf-reference-2', m, 'model', 'tokenizer.json'), 'utf8'));
    let nTok = 0;
    const t0 = process.hrtime.bigint();
    for (const t of texts) nTok += (await tok.encode(t)).getIds().length;
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`encode ${m.padEnd(22)} ${(texts.length / dt).toFixed(0).padStart(8)} texts/s  ` +
                `${(total / 1e6 / dt).toFixed(2).padStart(6)} MB/s  ${(nTok / dt).toFixed(0).padStart(9)} tokens/s  (${nTok} tokens)`);
  }
})();
