#!/usr/bin/env python3
"""make_use_corpus.py -- seeds for fuzz_use_load from the default model's
model.json (run once; the output is checked in).

    python3 tests/fuzz/make_use_corpus.py ~/.local/share/sense/models/use-lite/model.json

Each seed is u32 LE len(model.json) + model.json + the shard "s". The
manifest is pointed at the one shard "s"; the seeds shrink every weight to
one element (so the shard is small and the sizes match, and binding is what
refuses it), or damage one thing the loader must refuse."""
import json, os, struct, sys

src = json.load(open(sys.argv[1]))
out = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   'corpus', 'fuzz_use_load')
os.makedirs(out, exist_ok=True)

def seed(name, model, shard=b''):
    text = json.dumps(model, separators=(',', ':')).encode()
    with open(os.path.join(out, name), 'wb') as f:
        f.write(struct.pack('<I', len(text)) + text + shard)

def base():
    m = json.loads(json.dumps(src))
    ws = [w for g in m['weightsManifest'] for w in g['weights']]
    m['weightsManifest'] = [{'paths': ['s'], 'weights': ws}]
    return m, ws

# real shapes, empty shard: the size check names the weight cut short
m, ws = base()
seed('real-shapes-no-data', m)
# every weight one element: sizes match, binding refuses the shapes
m, ws = base()
for w in ws:
    w['shape'] = [1] * len(w['shape'])
seed('one-element', m, b'\0\0\x80\x3f' * len(ws))
# one element, one byte over
seed('one-element-over', m, b'\0\0\x80\x3f' * len(ws) + b'x')
# quantized (the other refusals of a weight are one mutation away)
for tag, fn in [
    ('quantized', lambda w: w.update(quantization={'dtype': 'uint8'})),
]:
    m, ws = base()
    for w in ws:
        w['shape'] = [1] * len(w['shape'])
    fn(ws[3])
    seed(tag, m, b'\0\0\x80\x3f' * len(ws))
m, ws = base()
m['weightsManifest'][0]['paths'] = ['../s']
seed('path-escape', m)
m, ws = base()
del m['modelTopology']
seed('no-topology', m)
seed('empty', {})
