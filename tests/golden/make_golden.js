// make_golden.js -- writes tests/golden/<case>.jsonl with the real Hugging
// Face tokenizers (npm tokenizers@0.23.2). See README.md here.
//   cd tests/golden && npm install tokenizers@0.23.2 && node make_golden.js FIXTURES
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
const path = require('path');

const fix = process.argv[2] || path.join(__dirname, '../../../shared/fixtures');
const cases = JSON.parse(fs.readFileSync(path.join(__dirname, 'cases.json'), 'utf8'));
const texts = JSON.parse(fs.readFileSync(path.join(fix, 'sentences-2.json'), 'utf8'))
  .concat(JSON.parse(fs.readFileSync(path.join(__dirname, 'texts-extra.json'), 'utf8')));

// The case's tokenizer.json: the fixture's, with top-level keys replaced
// ("set"), model keys replaced ("set_model"), and a normalizer of type
// "__precompiled__" standing for the fixture's own normalizer.
function build(c) {
  const base = JSON.parse(fs.readFileSync(
    path.join(fix, 'hf-reference-2', c.base, 'model', 'tokenizer.json'), 'utf8'));
  const orig = base.normalizer;
  const set = c.set || {};
  for (const k of Object.keys(set)) base[k] = JSON.parse(JSON.stringify(set[k]));
  for (const k of Object.keys(c.set_model || {})) base.model[k] = c.set_model[k];
  if (base.normalizer && base.normalizer.type === 'Sequence')
    base.normalizer.normalizers = base.normalizer.normalizers.map(
      n => n.type === '__precompiled__' ? orig : n);
  return JSON.stringify(base);
}

(async () => {
  for (const c of cases) {
    const tok = Tokenizer.fromString(build(c));
    const lines = [];
    for (let i = 0; i < texts.length; i++) {
      const e = await tok.encode(texts[i]);
      lines.push(JSON.stringify({ i, ids: e.getIds(), tokens: e.getTokens(),
                                  offsets: e.getOffsets() }));
    }
    fs.writeFileSync(path.join(__dirname, c.name + '.jsonl'), lines.join('\n') + '\n');
    console.log(c.name, lines.length);
  }
})().catch(e => { console.error(e); process.exit(1); });
