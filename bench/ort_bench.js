#!/usr/bin/env node
/*
 * ort_bench.js -- the BERT forward pass of the C engine (embed/bert.c,
 * through bench_minilm) against ONNX Runtime (onnxruntime-node, CPU) on the
 * same MiniLM-L6-shaped model with random weights, side by side.
 *
 * One run does everything:
 *   1. installs onnxruntime-node into bench/node_modules on first use
 *      (npm install --no-save, ONNXRUNTIME_NODE_INSTALL_CUDA=skip: its
 *      postinstall would otherwise fetch CUDA libraries from nuget.org);
 *   2. writes the model folder with bench/minilm_onnx.py (Debian's torch in
 *      /usr/bin/python3) when it is missing: safetensors for C, model.onnx
 *      for ORT, the same weights;
 *   3. checks agreement: the last hidden state of a fixed batch of 8
 *      sequences of 1 to 128 tokens, from C (packed, no padding), from ORT
 *      (padded, with the attention mask) and from torch (one sequence at a
 *      time, stored by minilm_onnx.py); max |C - ORT| over the real tokens
 *      must be at most --tol (1e-4), else it prints no speed and exits 1;
 *   4. measures the cblas_sgemm roofline in the C process (as bench_encode);
 *   5. times batch x length in {1, 8, 32} x {16, 128}: both sides get the
 *      same random token ids (mask all ones, token types 0); per cell the
 *      two alternate for --rounds rounds (C first in even rounds, ORT first
 *      in odd ones), each turn one warm-up run then enough timed runs for
 *      about --seconds; the figure is the median time of a forward call;
 *   6. prints one row per cell: tokens/s and sentences/s of each side, the
 *      ratio C/ORT, and each side's matmul GFLOP/s as a share of the
 *      roofline. FLOPs per token: 2 x the dense layers' weights (4 H^2 +
 *      2 H I per layer) + attention 4 L H per layer (Q K^T and P V).
 *
 * Precisions (--precisions, default f32,bf16,int8): one bench_minilm
 * process per precision (bench_minilm --precision P), all timed in the
 * same cells, in turns with ORT. The agreement check guards f32 (max |C -
 * ORT| <= --tol); bf16 and int8 print their max |C - ORT| and the worst
 * cosine of a sequence's mean-pooled state against ORT's (tests/
 * test_precision.c holds them to the reference files). Each process
 * reports its load time and resident memory (bench_minilm `info`).
 *
 * Run (from the repository root):
 *   cmake --build build --target bench_minilm
 *   node bench/ort_bench.js [--c build/bench_minilm] [--model DIR]
 *        [--rounds 3] [--seconds 1] [--threads N] [--tol 1e-4]
 *        [--batches 1,8,32] [--lens 16,128] [--json FILE] [--onnx FILE]
 * --model defaults to minilm-ort/ beside the bench_minilm binary (inside
 * the build folder, ignored by git). --threads (default: the number of
 * cores) sets ORT's intra-op threads; the C side runs as many threads as
 * OpenBLAS would (OPENBLAS_NUM_THREADS, else every core) on its own GEMM
 * (embed/gemm.c); OpenBLAS computes only the roofline. The environment
 * reaches the C process unchanged (SENSE_BERT_KERNELS, OPENBLAS_*).
 * SENSE_BENCH_PYTHON overrides /usr/bin/python3; SENSE_BENCH_NODE_MODULES
 * another folder for the npm packages. --onnx runs ORT on another ONNX file
 * of the same weights (e.g. one optimized offline with ORT's Python
 * transformers optimizer) instead of DIR/model.onnx; the agreement check
 * still guards it. The op types of the graph ORT runs after its own
 * optimizations are printed (from a throwaway session that saves it).
 */
'use strict';
const { performance } = require('perf_hooks');
const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

const ORT_PKG = 'onnxruntime-node';

function usage() {
  console.error('usage: node bench/ort_bench.js [--c BENCH_MINILM] ' +
                '[--model DIR] [--rounds N] [--seconds S] [--threads N] ' +
                '[--tol T] [--batches 1,8,32] [--lens 16,128] [--json FILE] [--onnx FILE] ' +
                '[--precisions f32,bf16,int8]');
  process.exit(2);
}

function parseArgs(argv) {
  const a = {
    c: 'build/bench_minilm', model: null, rounds: 3, seconds: 1.0,
    threads: os.cpus().length, tol: 1e-4, batches: [1, 8, 32],
    lens: [16, 128], json: null, onnx: null, precisions: ['f32', 'bf16', 'int8'],
  };
  const list = (s) => s.split(',').map((x) => parseInt(x, 10));
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i], v = argv[i + 1];
    if (v === undefined) usage();
    i++;
    if (k === '--c') a.c = v;
    else if (k === '--model') a.model = v;
    else if (k === '--rounds') a.rounds = parseInt(v, 10);
    else if (k === '--seconds') a.seconds = parseFloat(v);
    else if (k === '--threads') a.threads = parseInt(v, 10);
    else if (k === '--tol') a.tol = parseFloat(v);
    else if (k === '--batches') a.batches = list(v);
    else if (k === '--lens') a.lens = list(v);
    else if (k === '--json') a.json = v;
    else if (k === '--onnx') a.onnx = v;
    else if (k === '--precisions') a.precisions = v.split(',');
    else usage();
  }
  if (!(a.rounds >= 1) || !(a.seconds > 0) || !(a.threads >= 1) ||
      !(a.tol > 0) || a.batches.some((x) => !(x >= 1)) ||
      a.lens.some((x) => !(x >= 1 && x <= 512)) ||
      a.precisions.some((p) => !['f32', 'bf16', 'int8'].includes(p)) ||
      a.precisions[0] !== 'f32')
    usage();
  if (!a.model) a.model = path.join(path.dirname(a.c), 'minilm-ort');
  return a;
}

/* require() onnxruntime-node, installing it first if needed */
function loadOrt() {
  const dir = process.env.SENSE_BENCH_NODE_MODULES ||
      path.join(__dirname, 'node_modules');
  if (!fs.existsSync(path.join(dir, ORT_PKG, 'package.json'))) {
    const t0 = performance.now();
    console.error(`ort_bench: installing ${ORT_PKG} into ${dir}`);
    execFileSync('npm', ['install', '--no-save', '--no-package-lock',
                         '--no-audit', '--no-fund', '--prefix',
                         path.dirname(dir), ORT_PKG],
                 { stdio: ['ignore', 'ignore', 'inherit'],
                   env: { ...process.env,
                          ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip' } });
    console.error(`ort_bench: installed in ` +
                  `${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return require(path.join(dir, ORT_PKG));
}

/* the model folder, written by minilm_onnx.py when a file is missing */
function ensureModel(dir) {
  const need = ['config.json', 'model.safetensors', 'model.onnx',
                'check.json', 'check_ids.bin', 'check_torch.bin'];
  if (need.every((f) => fs.existsSync(path.join(dir, f)))) return;
  const py = process.env.SENSE_BENCH_PYTHON || '/usr/bin/python3';
  const script = path.join(__dirname, 'minilm_onnx.py');
  console.error(`ort_bench: writing the model into ${dir} (${py} ${script})`);
  const t0 = performance.now();
  try {
    execFileSync(py, [script, '--out', dir],
                 { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    console.error('ort_bench: minilm_onnx.py failed; it needs Debian\'s ' +
                  'torch: sudo apt-get install -y python3-torch (then ' +
                  'rerun; it is used from /usr/bin/python3)');
    process.exit(1);
  }
  console.error(`ort_bench: model written in ` +
                `${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/* The C process: one command line in, one JSON line out. */
function startC(bin, dir, prec) {
  const child = spawn(bin, ['--model', dir, '--precision', prec],
                      { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: child.stdout });
  const waiting = [];
  let dead = null;
  rl.on('line', (line) => {
    const w = waiting.shift();
    if (w) w.resolve(line);
  });
  child.on('error', (e) => { dead = e; });
  child.on('exit', (code) => {
    dead = dead || new Error(`${bin} exited with status ${code}`);
    while (waiting.length) waiting.shift().reject(dead);
  });
  return {
    async cmd(line) {
      if (dead) throw dead;
      const reply = await new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        child.stdin.write(line + '\n');
      });
      const r = JSON.parse(reply);
      if (!r.ok) throw new Error(`${bin}: ${r.error}`);
      return r;
    },
    quit() { child.stdin.end('quit\n'); },
  };
}

function readI32(file) {
  const b = fs.readFileSync(file);
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

function readF32(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(
      b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

/* an ids file for bench_minilm: n_seq, lens, packed ids (int32) */
function writeIds(file, lens, ids) {
  const head = Int32Array.from([lens.length, ...lens]);
  fs.writeFileSync(file, Buffer.concat([
    Buffer.from(head.buffer), Buffer.from(ids.buffer, ids.byteOffset,
                                          ids.byteLength)]));
}

/* ORT feeds for packed sequences: padded to the longest, with the mask */
function ortFeeds(ort, lens, ids) {
  const B = lens.length, L = Math.max(...lens);
  const a = new BigInt64Array(B * L), m = new BigInt64Array(B * L);
  let o = 0;
  lens.forEach((n, i) => {
    for (let t = 0; t < n; t++) {
      a[i * L + t] = BigInt(ids[o + t]);
      m[i * L + t] = 1n;
    }
    o += n;
  });
  return { input_ids: new ort.Tensor('int64', a, [B, L]),
           attention_mask: new ort.Tensor('int64', m, [B, L]) };
}

/* max |x - y| over the real tokens; x packed, y padded [B, L, H] or packed */
function maxDiff(lens, H, x, y, yPadded) {
  const L = Math.max(...lens);
  let d = 0, o = 0;
  lens.forEach((n, i) => {
    for (let t = 0; t < n; t++) {
      const yr = (yPadded ? i * L + t : o + t) * H, xr = (o + t) * H;
      for (let k = 0; k < H; k++)
        d = Math.max(d, Math.abs(x[xr + k] - y[yr + k]));
    }
    o += n;
  });
  return d;
}

/* Op types of an ONNX file, "domain.Op" -> count: a protobuf walk of
 * ModelProto.graph (field 7) -> GraphProto.node (1) -> NodeProto.op_type
 * (4) and domain (7); enough to show which fusions ORT made. */
function onnxOpCensus(file) {
  const b = fs.readFileSync(file);
  const varint = (p) => {
    let v = 0, m = 1, x;
    do { x = b[p.i++]; v += (x & 0x7f) * m; m *= 128; } while (x & 0x80);
    return v;
  };
  /* calls f(field, start, end) for each length-delimited field */
  const walk = (start, end, f) => {
    const p = { i: start };
    while (p.i < end) {
      const key = varint(p), type = key % 8, field = Math.floor(key / 8);
      if (type === 0) varint(p);
      else if (type === 1) p.i += 8;
      else if (type === 5) p.i += 4;
      else if (type === 2) { const n = varint(p); f(field, p.i, p.i + n); p.i += n; }
      else throw new Error(`${file}: unsupported protobuf wire type ${type}`);
    }
  };
  const count = {};
  walk(0, b.length, (f, s0, e0) => {
    if (f !== 7) return;
    walk(s0, e0, (g, s1, e1) => {
      if (g !== 1) return;
      let op = '', dom = '';
      walk(s1, e1, (h, s2, e2) => {
        if (h === 4) op = b.toString('utf8', s2, e2);
        else if (h === 7) dom = b.toString('utf8', s2, e2);
      });
      const k = (dom && dom !== 'ai.onnx' ? dom + '.' : '') + op;
      count[k] = (count[k] || 0) + 1;
    });
  });
  return count;
}

function median(a) {
  const s = [...a].sort((x, y) => x - y), n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* xorshift64: the same ids on every run */
function makeIds(n, vocab, seed) {
  let s = BigInt(seed) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn || 1n;
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= (s << 13n) & 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= (s << 17n) & 0xffffffffffffffffn;
    ids[i] = 1 + Number(s % BigInt(vocab - 1)); /* [1, vocab) */
  }
  return ids;
}

const fmt = (x, d = 0) => x.toLocaleString('en-US', {
  minimumFractionDigits: d, maximumFractionDigits: d });

async function main() {
  const a = parseArgs(process.argv);
  const ort = loadOrt();
  ensureModel(a.model);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sense-ort-'));
  const cs = a.precisions.map((p) => startC(a.c, a.model, p));
  const c = cs[0]; /* f32 */
  let status = 0;
  try {
    const info = await c.cmd('info');
    const infos = [];
    for (const x of cs) infos.push(await x.cmd('info'));
    const H = info.hidden, I = info.inter, NL = info.layers;
    const opts = {
      executionProviders: ['cpu'], intraOpNumThreads: a.threads,
      interOpNumThreads: 1, executionMode: 'sequential',
      graphOptimizationLevel: 'all', enableCpuMemArena: true,
      enableMemPattern: true,
    };
    const onnx = a.onnx || path.join(a.model, 'model.onnx');
    let t0 = performance.now();
    const sess = await ort.InferenceSession.create(onnx, opts);
    const ortLoad = (performance.now() - t0) / 1000;
    console.log(`model: ${info.model} (H ${H}, ${NL} layers, ` +
                `${info.heads} heads, I ${I}, vocab ${info.vocab}), ` +
                `random weights in ${a.model}`);
    console.log(`C:   embed/bert.c on embed/gemm.c, ${info.openblas_threads} ` +
                `threads, kernels ${info.bert_kernels} (OpenBLAS, ` +
                `${info.openblas_core}, only for the roofline)`);
    console.log(`ORT: onnxruntime-node ${ort.env.versions.node}, CPU EP, ` +
                `intra-op threads ${opts.intraOpNumThreads}, inter-op ` +
                `${opts.interOpNumThreads}, ${opts.executionMode}, graph ` +
                `optimizations ${opts.graphOptimizationLevel}, memory ` +
                `arena on, memory pattern on, thread spinning default (on); ` +
                `session created in ${ortLoad.toFixed(2)} s`);
    {
      const optFile = path.join(tmp, 'optimized.onnx');
      await ort.InferenceSession.create(onnx, { ...opts, logSeverityLevel: 3,
                                               optimizedModelFilePath: optFile });
      const ops = onnxOpCensus(optFile);
      fs.rmSync(optFile);
      console.log(`ORT graph after optimization (${path.basename(onnx)}): ` +
                  Object.entries(ops).sort((x, y) => y[1] - x[1])
                      .map(([k, n]) => `${n} ${k}`).join(', '));
    }
    console.log(`cores: ${os.cpus().length}, load average ` +
                `${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);

    /* agreement */
    const chk = JSON.parse(fs.readFileSync(path.join(a.model, 'check.json')));
    const cids = readI32(path.join(a.model, 'check_ids.bin'));
    const tref = readF32(path.join(a.model, 'check_torch.bin'));
    writeIds(path.join(tmp, 'check.ids'), chk.lens, cids);
    await c.cmd(`forward ${path.join(tmp, 'check.ids')} ` +
                `${path.join(tmp, 'check.out')}`);
    const cout = readF32(path.join(tmp, 'check.out'));
    const oout = (await sess.run(ortFeeds(ort, chk.lens, cids)))
        .last_hidden_state.data;
    const dCO = maxDiff(chk.lens, H, cout, oout, true);
    const dCT = maxDiff(chk.lens, H, cout, tref, false);
    const dOT = maxDiff(chk.lens, H, tref, oout, true);
    let amax = 0;
    for (const v of tref) amax = Math.max(amax, Math.abs(v));
    console.log(`\nagreement, last hidden state of ${chk.lens.length} ` +
                `sequences of ${Math.min(...chk.lens)}-` +
                `${Math.max(...chk.lens)} tokens (max |value| ` +
                `${amax.toFixed(2)}): max |C - ORT| ${dCO.toExponential(2)}, ` +
                `|C - torch| ${dCT.toExponential(2)}, |ORT - torch| ` +
                `${dOT.toExponential(2)} (tolerance ${a.tol})`);
    if (!(dCO <= a.tol)) {
        console.log('ort_bench: C and ORT disagree; no speed figures');
        status = 1;
        return;
    }
    /* reduced precisions: how far from ORT's fp32 */
    const pooledCos = (x, y) => { /* worst cosine of mean-pooled states */
      let worst = 1, off = 0;
      const Lmax = Math.max(...chk.lens);
      chk.lens.forEach((L, s) => {
        const u = new Float64Array(H), v = new Float64Array(H);
        for (let t = 0; t < L; t++)
          for (let h = 0; h < H; h++) {
            u[h] += x[(off + t) * H + h];
            v[h] += y[(s * Lmax + t) * H + h];
          }
        let uv = 0, uu = 0, vv = 0;
        for (let h = 0; h < H; h++) {
          uv += u[h] * v[h]; uu += u[h] * u[h]; vv += v[h] * v[h];
        }
        worst = Math.min(worst, uv / Math.sqrt(uu * vv));
        off += L;
      });
      return worst;
    };
    const agree = [{ precision: 'f32', max_diff: dCO,
                     cos: pooledCos(cout, oout) }];
    for (let i = 1; i < cs.length; i++) {
      const f = path.join(tmp, `check.${a.precisions[i]}.out`);
      await cs[i].cmd(`forward ${path.join(tmp, 'check.ids')} ${f}`);
      const x = readF32(f);
      agree.push({ precision: a.precisions[i],
                   max_diff: maxDiff(chk.lens, H, x, oout, true),
                   cos: pooledCos(x, oout) });
    }
    for (let i = 0; i < cs.length; i++)
      console.log(`${a.precisions[i].padEnd(4)}: load ` +
                  `${(infos[i].load_s * 1000).toFixed(0)} ms, resident ` +
                  `${infos[i].rss_mb.toFixed(0)} MB after load; max |C - ORT| ` +
                  `${agree[i].max_diff.toExponential(2)}, worst cosine of ` +
                  `mean-pooled states to ORT ${agree[i].cos.toFixed(7)}`);

    /* roofline: measured before and after the timing, the best kept (a
     * busy machine drags one measurement down) */
    const showRoof = (when, r) => console.log(
        `roofline ${when}: cblas_sgemm at M = ${r.m}: ` +
        r.shapes.map((s) => `${s.what} ${s.gflops.toFixed(1)}`).join(', ') +
        ` GFLOP/s; best ${r.best.toFixed(1)}`);
    const roof0 = await c.cmd('roofline 5');
    showRoof('before', roof0);

    /* timing */
    const flopsPerTok = (L) => NL * (2 * (4 * H * H + 2 * H * I) + 4 * L * H);
    const rows = [];
    console.log(`\ntiming ${a.batches.length * a.lens.length} cells ...`);
    const head = ['batch x len', 'C tok/s', 'ORT tok/s', 'C sent/s',
                  'ORT sent/s', 'C/ORT', 'C GFLOP/s', 'C roof', 'ORT roof',
                  'runs C/ORT'];
    const w = [11, 9, 9, 9, 10, 6, 9, 6, 8, 10];
    const line = (cells) => console.log(
        cells.map((s, i) => (i ? String(s).padStart(w[i])
                                : String(s).padEnd(w[i]))).join('  '));
    for (const B of a.batches) {
      for (const L of a.lens) {
        const lens = new Array(B).fill(L), T = B * L;
        const ids = makeIds(T, info.vocab, 1000 * B + L);
        const idf = path.join(tmp, `b${B}x${L}.ids`);
        writeIds(idf, lens, ids);
        const feeds = ortFeeds(ort, lens, ids);
        const runOrt = async (warm, reps) => {
          const t = [];
          for (let r = 0; r < warm + reps; r++) {
            const s = performance.now();
            await sess.run(feeds);
            if (r >= warm) t.push((performance.now() - s) / 1000);
          }
          return t;
        };
        /* calibrate: one run each, to size the turns */
        const estc = [];
        for (const x of cs)
          estc.push(median((await x.cmd(`time ${idf} 1 1`)).times));
        const est = { c: estc[0], o: median(await runOrt(1, 1)) };
        const reps = (t) => Math.max(3, Math.min(10000,
                                                 Math.ceil(a.seconds / t)));
        const tcs = cs.map(() => []), to = [];
        const sides = ['o', ...cs.map((_, i) => i)];
        for (let r = 0; r < a.rounds; r++) {
          /* rotate the order of the turns round by round */
          const order = sides.slice(r % sides.length)
              .concat(sides.slice(0, r % sides.length));
          for (const side of order) {
            await sleep(100); /* let the other side's threads go idle */
            if (side === 'o')
              to.push(...await runOrt(1, reps(est.o)));
            else
              tcs[side].push(...(await cs[side].cmd(
                  `time ${idf} 1 ${reps(estc[side])}`)).times);
          }
        }
        const tc = tcs[0];
        const mc = median(tc), mo = median(to);
        const prec_tok_s = {};
        cs.forEach((_, i) => {
          prec_tok_s[a.precisions[i]] = T / median(tcs[i]);
        });
        const gc = flopsPerTok(L) * T / mc * 1e-9;
        const go = flopsPerTok(L) * T / mo * 1e-9;
        rows.push({ batch: B, len: L, c_tok_s: T / mc, ort_tok_s: T / mo,
                    c_sent_s: B / mc, ort_sent_s: B / mo, ratio: mo / mc,
                    c_gflops: gc, ort_gflops: go,
                    c_runs: tc.length, ort_runs: to.length, prec_tok_s,
                    prec_gflops: Object.fromEntries(Object.entries(prec_tok_s)
                        .map(([p, v]) => [p, flopsPerTok(L) * v * 1e-9])) });
      }
    }
    const roof1 = await c.cmd('roofline 5');
    showRoof('after', roof1);
    const roof = roof1.best > roof0.best ? roof1 : roof0;
    console.log(`\nmedian of the timed forward calls, ${a.rounds} ` +
                `alternating rounds of ~${a.seconds} s per side per cell; ` +
                `roofline ${roof.best.toFixed(1)} GFLOP/s\n`);
    line(head);
    for (const row of rows) {
      row.c_roofline = row.c_gflops / roof.best;
      row.ort_roofline = row.ort_gflops / roof.best;
      line([`${row.batch} x ${row.len}`, fmt(row.c_tok_s),
            fmt(row.ort_tok_s), fmt(row.c_sent_s, 1),
            fmt(row.ort_sent_s, 1), row.ratio.toFixed(2) + 'x',
            row.c_gflops.toFixed(1),
            (100 * row.c_roofline).toFixed(0) + '%',
            (100 * row.ort_roofline).toFixed(0) + '%',
            `${row.c_runs}/${row.ort_runs}`]);
    }
    if (cs.length > 1) {
      console.log(`\nprecisions side by side (tokens/s; GFLOP/s as ` +
                  `above; x: over ORT fp32; last: best / ORT):`);
      const pw = 11;
      console.log(['batch x len', ...a.precisions.map((p) => `${p} tok/s`),
                   'ORT tok/s', ...a.precisions.map((p) => `${p}/ORT`),
                   ...a.precisions.slice(1).map((p) => `${p}/f32`),
                   'best/ORT']
                      .map((s, i) => i ? s.padStart(pw) : s.padEnd(pw))
                      .join('  '));
      for (const row of rows) {
        const v = a.precisions.map((p) => row.prec_tok_s[p]);
        const best = Math.max(...v);
        row.best_over_ort = best / row.ort_tok_s;
        console.log([`${row.batch} x ${row.len}`, ...v.map((x) => fmt(x)),
                     fmt(row.ort_tok_s),
                     ...v.map((x) => (x / row.ort_tok_s).toFixed(2) + 'x'),
                     ...v.slice(1).map((x) => (x / v[0]).toFixed(2) + 'x'),
                     row.best_over_ort.toFixed(2) + 'x']
                        .map((s, i) => i ? String(s).padStart(pw)
                                         : String(s).padEnd(pw)).join('  '));
      }
      const gf = (p) => rows.map((r) => `${r.batch}x${r.len} ` +
                                 r.prec_gflops[p].toFixed(0)).join(', ');
      for (const p of a.precisions)
        console.log(`${p} GFLOP/s: ${gf(p)}`);
      const bi = a.precisions.indexOf('bf16');
      const big = rows.find((r) => r.batch === 32 && r.len === 128);
      if (bi > 0 && big)
        console.log(`target bf16 >= 2.5x f32 at 32 x 128: ` +
                    `${(big.prec_tok_s.bf16 / big.prec_tok_s.f32).toFixed(2)}x ` +
                    (big.prec_tok_s.bf16 >= 2.5 * big.prec_tok_s.f32
                         ? 'met' : 'NOT met'));
      console.log(`target best >= 1.5x ORT fp32 in every cell: ` +
                  rows.map((r) => `${r.batch}x${r.len} ` +
                           `${r.best_over_ort.toFixed(2)}x`).join(', ') +
                  (rows.every((r) => r.best_over_ort >= 1.5) ? ' met'
                                                             : ' NOT met'));
    }
    const b32 = rows.filter((r) => r.batch === 32);
    if (b32.length)
      console.log(`\ntarget C >= 1.0x ORT at batch 32: ` +
                  b32.map((r) => `x${r.len} ${r.ratio.toFixed(2)}x ` +
                          (r.ratio >= 1 ? 'met' : 'NOT met')).join(', '));
    console.log(`load average after: ` +
                os.loadavg().map((x) => x.toFixed(2)).join(' '));
    if (a.json)
      fs.writeFileSync(a.json, JSON.stringify({
        ort_version: ort.env.versions.node, ort_options: opts, c: info,
        precisions: infos, agreement_precisions: agree,
        agreement: { c_ort: dCO, c_torch: dCT, ort_torch: dOT, tol: a.tol },
        roofline: { before: roof0, after: roof1 }, rows }, null, 2) + '\n');
  } finally {
    for (const x of cs) x.quit();
    fs.rmSync(tmp, { recursive: true, force: true });
    process.exitCode = status;
  }
}

main().catch((e) => {
  console.error(`ort_bench: ${e.message}`);
  process.exit(1);
});
