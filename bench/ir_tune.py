#!/usr/bin/python3
"""ir_tune.py -- the tuning harness behind the fusion rule (issue 12).

Reads a database that bench_ir filled (`bench_ir DIR --db PATH`), so a
ranking idea is measured in seconds instead of an ingest: FTS5's own
porter tokens with their positions (fts5vocab 'instance' over
documents_fts), every document's case-folded trigrams, every chunk's
vector; the queries' vectors come from a sensed it starts on the same
model (`embed`). It then scores every document for every query with
numpy, the same formulas as index/lexical.c and index/store.c:

  P  BM25 of the query's stems over its ideal score (k1, b per table),
     plus W_S times the BM25 of its words' WordNet synonyms (--wordnet)
  T  BM25 of its trigrams, likewise
  V  a document's best chunk cosine
  hybrid = P + W_T * T + W_V * known * trust * V   (store_int.h)

and prints Recall@1, Recall@10 and MRR@10 over all queries and bench_ir's
two halves (the same glibc srand/rand split), for the grids the choices in
store_int.h come from; last, how many targets are in either list's top
10 (the most an oracle picking one list per query could reach). It matches bench_ir within 0.002 (bench_ir ranks
only the lists' candidates, this every document).

Usage:
  bench/ir_tune.py DIR DB [--model PATH|default] [--sensed PATH]
                   [--unk-id N] [--wordnet DIR|none]
                   [--other DB2 --other-model PATH]
--wordnet: the WordNet folder synonyms come from, as sensed reads them
(default /usr/share/wordnet; none: without synonyms).
--other: a second database of the same corpus under another model (a
random-weight fixture): hybrid against its lists with a fixed cosine
weight and with trust (its known share taken as 1: the case trust is for).

Needs python3-numpy (Debian). Not run by ctest.
"""
import argparse, collections, ctypes, json, math, os, re, socket, sqlite3
import unicodedata
import subprocess, sys, tempfile, time
import numpy as np


def load(db_path, ir_dir):
    db = sqlite3.connect('file:%s?mode=ro' % db_path, uri=True)
    cid, dim = db.execute("SELECT id, dim FROM collections WHERE name = 'ir'").fetchone()
    rows = db.execute("SELECT id, ext_id, text FROM documents WHERE collection = ? "
                      "ORDER BY id", (cid,)).fetchall()
    row_of = {r[0]: i for i, r in enumerate(rows)}
    S = argparse.Namespace(N=len(rows), ext=[r[1] for r in rows],
                           text=[r[2] for r in rows])
    # documents_fts's tokens, made here: its tokenizer ('sense_words',
    # index/words.c) lives in libsense, not in Python's SQLite
    toks = [TOKEN.findall(t) for t in S.text]
    porter = stem_map({w.casefold() for d in toks for w in d})
    post = [collections.defaultdict(dict), collections.defaultdict(dict)]
    S.dl = np.zeros(S.N)
    for i, d in enumerate(toks):
        S.dl[i] = len(d)
        for w in d:
            m = porter[w.casefold()]
            seen = {m}
            for k in (0, 1):
                post[k][m][i] = post[k][m].get(i, 0) + 1
            for p in word_parts(w):
                st = stem_map([p.casefold()])[p.casefold()]
                if st and st not in seen:  # index/words.c on_part
                    seen.add(st)
                    post[1][st][i] = post[1][st].get(i, 0) + 1
    S.post0, S.post = [{t: (np.fromiter(d.keys(), np.int64, len(d)),
                            np.fromiter(d.values(), float, len(d)))
                        for t, d in pk.items()} for pk in post]
    ch = db.execute("SELECT document, vector FROM chunks WHERE collection = ? "
                    "ORDER BY document, ordinal", (cid,)).fetchall()
    S.ch_doc = np.array([row_of[r[0]] for r in ch])
    S.ch_vec = np.frombuffer(b''.join(r[1] for r in ch), np.float32).reshape(len(ch), dim)
    vocab, ids, cnt, tdl, ptr = {}, [], [], np.zeros(S.N), [0]
    for i, t in enumerate(S.text):
        s = t.casefold()
        c = collections.Counter(s[j:j + 3] for j in range(len(s) - 2))
        tdl[i] = max(len(s) - 2, 0)
        for k, v in c.items():
            ids.append(vocab.setdefault(k, len(vocab)))
            cnt.append(v)
        ptr.append(len(ids))
    S.tri_vocab, S.tri_ids, S.tri_cnt, S.tri_dl = vocab, np.array(ids), np.array(cnt, float), tdl
    S.tri_doc = np.repeat(np.arange(S.N), np.diff(ptr))
    S.tri_df = np.bincount(S.tri_ids, minlength=len(vocab)).astype(float)
    qs = [json.loads(l) for l in open(os.path.join(ir_dir, 'queries.jsonl'))]
    S.qtext = [q['text'] for q in qs]
    S.qtok = [list(dict.fromkeys(x)) for x in stems(S.qtext)]
    ext_row = {e: i for i, e in enumerate(S.ext)}
    S.target = np.array([ext_row.get(q['target'], -1) for q in qs])
    libc = ctypes.CDLL('libc.so.6')  # bench_ir's split
    libc.srand(1202)
    perm = list(range(len(qs)))
    for i in range(len(qs) - 1, 0, -1):
        j = libc.rand() % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    S.half = np.zeros(len(qs), int)
    for i, p in enumerate(perm):
        S.half[p] = int(i >= len(qs) // 2)
    return S


# unicode61's tokens (letters and digits), as written
TOKEN = re.compile(r'[^\W_]+')
_STEMS = {}


def stem_map(words):
    """FTS5's porter stem of each (case-folded) word, cached."""
    new = [w for w in words if w not in _STEMS]
    for w, st in zip(new, stems(new) if new else []):
        _STEMS[w] = st[0] if st else ''
    return {w: _STEMS[w] for w in words}


_WORDS = set()


def word_list(d):
    """index/words.c load: the first field of each line of WordNet's index
    and exception files that is an ASCII lower-case word."""
    out = set()
    for f in ('index.noun', 'index.verb', 'index.adj', 'index.adv',
              'noun.exc', 'verb.exc', 'adj.exc', 'adv.exc'):
        for line in open(os.path.join(d, f), encoding='latin-1'):
            m = re.match(r'([a-z]+)[ \n]', line)
            if m and not line.startswith(' '):
                out.add(m.group(1))
    return out


def word_ok(x):
    return x in _WORDS or (x[-1:] == 's' and x[:-1] in _WORDS) or \
        (x[-2:] == 'es' and x[:-2] in _WORDS)


def whole_ok(x):
    if word_ok(x):
        return True
    for suf in ('ing', 'ed', 'er', 'ers', 'ly', 'able', 'ness'):
        b = x[:-len(suf)]
        if x.endswith(suf) and len(b) >= 3 and (
                b in _WORDS or b + 'e' in _WORDS or
                (len(b) > 3 and b[-1] == b[-2] and b[:-1] in _WORDS)):
            return True
    return False


def _cls(ch):
    c = unicodedata.category(ch)
    return 'U' if c in ('Lu', 'Lt') else 'L' if c in ('Ll', 'Lm', 'Lo') else \
        'D' if c[0] == 'N' else 'M' if c[0] == 'M' else 'O'


def word_parts(w):
    """index/words.c sn__words_split: camel case and digits, then a
    compound of two listed words."""
    n = len(w)
    if n < 2 or n > 64:
        return []
    segs, start = [], 0
    for i in range(1, n + 1):
        cut = i == n
        if not cut:
            a, b, j = _cls(w[i - 1]), _cls(w[i]), i - 1
            while a == 'M' and j > 0:
                a, j = _cls(w[j - 1]), j - 1
            if b == 'M':
                continue
            cut = (a == 'D') != (b == 'D') or (a == 'L' and b == 'U') or \
                (a == 'U' and b == 'U' and i + 1 < n and _cls(w[i + 1]) == 'L')
        if cut:
            segs.append(w[start:i])
            start = i
    out = []

    def add(p):
        key = lambda x: x.lower() if x.isascii() else x
        if p and len(p) != n and key(p) not in [key(x) for x in out]:
            out.append(p)
    if len(segs) > 1:
        for x in segs:
            add(x)
    lw = w.lower()
    if _WORDS and w.isascii() and w.isalpha() and n >= 6 and not whole_ok(lw):
        best, at = 0, 0
        for i in range(3, n - 2):
            if min(i, n - i) > best and word_ok(lw[:i]) and word_ok(lw[i:]):
                best, at = min(i, n - i), i
        if best:
            add(w[:at])
            add(w[at:])
    return out if len(out) >= 2 else []


def query_parts(S):
    """lexical.c add_parts: each query word's parts, after the query's own
    words, each once (case-folded), as stems."""
    out = []
    for text in S.qtext:
        seen = set(w.casefold() for w in TOKEN.findall(text))
        ps = []
        for w in TOKEN.findall(text):
            for p in word_parts(w):
                if p.casefold() not in seen:
                    seen.add(p.casefold())
                    ps.append(stem_map([p.casefold()])[p.casefold()])
        out.append([p for p in ps if p])
    return out


def stems(texts):
    """FTS5's porter unicode61 tokens of each text, in order."""
    m = sqlite3.connect(':memory:')
    m.execute("CREATE VIRTUAL TABLE q USING fts5(x, tokenize = 'porter unicode61 remove_diacritics 2')")
    m.executemany("INSERT INTO q (rowid, x) VALUES (?, ?)", [(i + 1, t) for i, t in enumerate(texts)])
    m.execute("CREATE VIRTUAL TABLE temp.qv USING fts5vocab(main, q, instance)")
    toks = [[] for _ in texts]
    for term, doc, _, off in m.execute("SELECT term, doc, col, offset FROM temp.qv"):
        toks[doc - 1].append((off, term))
    return [[t for _, t in sorted(x)] for x in toks]


def wordnet(d):
    """wordnet.c sn_wordnet_syn_parse: one-word lemma -> the other words of
    its first synset in each part of speech."""
    syn = {}
    for pos in ('noun', 'verb', 'adj', 'adv'):
        data = open(os.path.join(d, 'data.' + pos), 'rb').read()
        for line in open(os.path.join(d, 'index.' + pos), encoding='latin-1'):
            if line.startswith('  '):
                continue
            f = line.split()
            if '_' in f[0]:
                continue
            off = int(f[4 + int(f[3]) + 2])
            g = data[off:data.index(b'\n', off)].decode('latin-1').split()
            for i in range(int(g[3], 16)):
                w = re.sub(r'\(.*\)$', '', g[4 + 2 * i]).replace('_', ' ')
                lst = syn.setdefault(f[0], [])
                if w.lower() != f[0] and w.lower() not in (x.lower() for x in lst):
                    lst.append(w)
    return syn


def synonyms(S, syn):
    """lexical.c expand: per query, the stems of its words' synonyms'
    words that are not the query's own stems (those match the same
    tokens and count nothing), each once."""
    out = []
    for q, text in enumerate(S.qtext):
        own = list(dict.fromkeys(w.casefold() for w in re.findall(r'\w+', text)))
        ws = []
        for w in own:
            if len(w) >= 3:
                for x in re.findall(r'\w+', ' '.join(syn.get(w, ()))):
                    if x.casefold() not in own and x.casefold() not in ws:
                        ws.append(x.casefold())
        st = [t for x in (stems(ws) if ws else []) for t in x]
        out.append([t for t in dict.fromkeys(st) if t not in S.qtok[q]])
    return out


def embed(sensed, model, texts, unk_id):
    """Query vectors and known shares (daemon/ops.c query_known)."""
    d = tempfile.mkdtemp(prefix='ir-tune-')
    sock = os.path.join(d, 's.sock')
    p = subprocess.Popen([sensed, '--socket', sock, '--db', os.path.join(d, 'e.db'),
                          '--model', model], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                break
            except OSError:
                time.sleep(0.05)
        f = s.makefile('rb')
        vecs, known = [], []
        for i in range(0, len(texts), 32):
            b = texts[i:i + 32]
            s.sendall((json.dumps({"id": 1, "op": "embed", "texts": b, "tokens": True}) + "\n").encode())
            r = json.loads(f.readline())
            vecs += r['embeddings']
            for text, toks in zip(b, r['tokens']):
                unk = [0] * len(text)
                for t in toks:
                    if t['id'] == unk_id:
                        for c in range(t['start'], min(t['end'], len(text))):
                            unk[c] = 1
                cs = [c for c, ch in enumerate(text) if ch not in ' \t\n\r']
                known.append(1 - sum(unk[c] for c in cs) / len(cs) if cs else 0)
        return np.array(vecs, np.float32), np.array(known)
    finally:
        p.terminate()
        p.wait()


def idf(N, df):
    return np.maximum(np.log(1 + (N - df + 0.5) / (df + 0.5)), 1e-6)


def words(S, q, k1, b, w_syn=0.0, w_parts=None):
    """w_parts None: the index without parts (schema 3) and no query
    parts; else the index with them and the query's parts at w_parts."""
    s, ideal = np.zeros(S.N), 0.0
    norm = k1 * (1 - b + b * S.dl / S.dl.mean())
    post = S.post0 if w_parts is None else S.post
    parts = S.qparts[q] if w_parts is not None else []
    syn = S.qsyn[q] if w_syn else []
    n_own = len(S.qtok[q])
    for i, t in enumerate(S.qtok[q] + parts + syn):
        p = post.get(t)
        w = float(idf(S.N, len(p[0]) if p else 0))
        ideal += w if i < n_own else 0  # a synonym or part adds, never dilutes
        weight = 1 if i < n_own else w_parts if i < n_own + len(parts) else w_syn
        if p:
            d, tf = p
            s[d] += weight * w * tf * (k1 + 1) / (tf + norm[d])
    return s / ideal if ideal > 0 else s


def trigrams(S, q, k1, b):
    t = S.qtext[q].casefold()
    grams = list(dict.fromkeys(t[j:j + 3] for j in range(len(t) - 2)))
    ids = [S.tri_vocab.get(g, -1) for g in grams]
    ideal = float(idf(S.N, np.array([S.tri_df[i] if i >= 0 else 0 for i in ids])).sum())
    s = np.zeros(S.N)
    have = np.array([i for i in ids if i >= 0])
    if ideal <= 0 or not len(have):
        return s
    m = np.isin(S.tri_ids, have)
    tid, tf, d = S.tri_ids[m], S.tri_cnt[m], S.tri_doc[m]
    norm = k1 * (1 - b + b * S.tri_dl[d] / S.tri_dl.mean())
    np.add.at(s, d, idf(S.N, S.tri_df[tid]) * tf * (k1 + 1) / (tf + norm))
    return s / ideal


def best_chunk(S, qv):
    out = np.full((len(qv), S.N), -1.0, np.float32)
    cos = qv @ S.ch_vec.T
    for q in range(len(qv)):
        np.maximum.at(out[q], S.ch_doc, cos[q])
    return out


def trust(L, V, n=10):
    """store.c fuse_trust"""
    shared = len(set(np.argsort(-L)[:n]) & set(np.argsort(-V)[:n]))
    return 1.0 if shared else 1.0 - min(1.0, max(0.0, L.max()))


def top10_either(S, L, V):
    """Per query, whether the target is in the lexical or the vector
    list's top 10: the Recall@10 of an oracle that picks the better list
    for each query, the most a fusion of the two lists could reach
    without reordering the documents beyond either list's tenth."""
    return np.array([t >= 0 and (t in np.argsort(-L[q])[:10] or t in np.argsort(-V[q])[:10])
                     for q, t in enumerate(S.target)], float)


def report(S, scores, label):
    rk = []
    for s, t in zip(scores, S.target):
        rk.append(0 if t < 0 else 1 + int(np.sum(s > s[t])) + int(np.sum((s == s[t])[:t])))
    rk = np.array(rk)
    out = []
    for m in (np.ones(len(rk), bool), S.half == 0, S.half == 1):
        r = rk[m]
        hit = (r >= 1) & (r <= 10)
        out.append((np.mean(r == 1), np.mean(hit), np.mean(np.where(hit, 1 / np.maximum(r, 1), 0))))
    print('%-34s R@1 %.3f R@10 %.3f MRR %.3f | A %.3f %.3f | B %.3f %.3f' % (
        label, *out[0], *out[1][1:], *out[2][1:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dir')
    ap.add_argument('db')
    ap.add_argument('--model', default='default')
    ap.add_argument('--sensed', default=os.path.join(os.path.dirname(__file__), '..', 'build', 'sensed'))
    ap.add_argument('--other')
    ap.add_argument('--other-model')
    ap.add_argument('--wordnet', default='/usr/share/wordnet')
    ap.add_argument('--unk-id', type=int, default=0,
                    help="the model's unknown token (the default model's: 0)")
    a = ap.parse_args()
    if a.wordnet != 'none':
        _WORDS.update(word_list(a.wordnet))
    S = load(a.db, a.dir)
    S.qsyn = synonyms(S, wordnet(a.wordnet)) if a.wordnet != 'none' else [[] for _ in S.qtext]
    S.qparts = query_parts(S)
    qv, known = embed(a.sensed, a.model, S.qtext, a.unk_id)
    V = best_chunk(S, qv)
    nq = len(S.qtext)
    print('%d documents, %d queries; known share: mean %.2f' % (S.N, nq, known.mean()))
    Tq = {b: [trigrams(S, q, 1.2, b) for q in range(nq)] for b in (0.5, 0.75)}
    report(S, [words(S, q, 1.2, 0.75) for q in range(nq)], 'words alone, k1 1.2 b .75 (~FTS5)')
    report(S, list(V), 'vector alone')
    for k1 in (0.4, 0.6, 0.8, 1.2, 2.0):
        for b in (0.6, 0.75, 0.9):
            P = [words(S, q, k1, b) for q in range(nq)]
            for tb in (0.5, 0.75):
                report(S, [P[q] + Tq[tb][q] + 0.4 * known[q] * V[q] for q in range(nq)],
                       'words k1 %.1f b %.2f, tri b %.2f' % (k1, b, tb))
    P = [words(S, q, 0.6, 0.75) for q in range(nq)]
    L = [P[q] + Tq[0.5][q] for q in range(nq)]
    report(S, L, 'lexical (P + T)')
    for wv in (0.2, 0.4, 0.8):
        report(S, [L[q] + wv * known[q] * V[q] for q in range(nq)], 'hybrid, fixed W_V %.1f' % wv)
    report(S, [L[q] + 0.4 * known[q] * trust(L[q], V[q]) * V[q] for q in range(nq)],
           'hybrid, W_V 0.4 with trust')
    for ws in (0.2, 0.35, 0.5, 0.75):  # store_int.h SN__LEX_SYN_WEIGHT
        Ls = [words(S, q, 0.6, 0.75, ws) + Tq[0.5][q] for q in range(nq)]
        report(S, Ls, 'lexical, synonyms W_S %.2f' % ws)
        report(S, [Ls[q] + 0.4 * known[q] * trust(Ls[q], V[q]) * V[q] for q in range(nq)],
               'hybrid, synonyms W_S %.2f' % ws)
    for wp in (0.25, 0.35, 0.5):  # index/words.c: parts of words, weighed as synonyms
        Ls = [words(S, q, 0.6, 0.75, 0.35, wp) + Tq[0.5][q] for q in range(nq)]
        report(S, Ls, 'lexical, synonyms, parts W_P %.2f' % wp)
        report(S, [Ls[q] + 0.4 * known[q] * trust(Ls[q], V[q]) * V[q] for q in range(nq)],
               'hybrid, synonyms, parts W_P %.2f' % wp)
    Ls = [words(S, q, 0.6, 0.75, 0.35, 0.35) + Tq[0.5][q] for q in range(nq)]
    either = top10_either(S, Ls, V)
    print('either list\'s top 10 (an oracle picking a list per query): R@10 %.3f | A %.3f | B %.3f' % (
        either.mean(), either[S.half == 0].mean(), either[S.half == 1].mean()))
    if a.other:
        O = load(a.other, a.dir)
        assert O.ext == S.ext, 'the other database must hold the same corpus, in order'
        ov, ok = embed(a.sensed, a.other_model, S.qtext, -1)
        VO = best_chunk(O, ov)
        report(S, list(VO), 'other model: vector alone')
        report(S, [L[q] + 0.4 * ok[q] * VO[q] for q in range(nq)], 'other model: fixed W_V 0.4')
        report(S, [L[q] + 0.4 * ok[q] * trust(L[q], VO[q]) * VO[q] for q in range(nq)],
               'other model: with trust')


if __name__ == '__main__':
    main()
