// tests/http/clients.mjs BASE SOCKET KEY -- real clients nobody here wrote,
// pointed at sensed --http, must get the vectors the Unix socket gives:
// the official OpenAI Node SDK (which asks for base64 unless told
// otherwise, and decodes it) and LangChain's OpenAIEmbeddings. Exits 1 on
// the first mismatch.
import assert from 'node:assert/strict';
import net from 'node:net';
import OpenAI from 'openai';
import { OpenAIEmbeddings } from '@langchain/openai';

const [base, sock, key] = process.argv.slice(2);

// One request line on the socket, its reply parsed.
function socketCall(req) {
    return new Promise((resolve, reject) => {
        const s = net.createConnection({ path: sock });
        let buf = '';
        s.on('data', d => {
            buf += d;
            const i = buf.indexOf('\n');
            if (i >= 0) {
                s.end();
                resolve(JSON.parse(buf.slice(0, i)));
            }
        });
        s.on('error', reject);
        s.write(JSON.stringify(req) + '\n');
    });
}

// Vectors equal as float32: the socket prints each float with %.9g (exact),
// base64 carries the float32 bytes.
function sameVectors(got, want, what) {
    assert.equal(got.length, want.length, `${what}: count`);
    for (let i = 0; i < want.length; i++) {
        assert.equal(got[i].length, want[i].length, `${what}[${i}]: dim`);
        for (let k = 0; k < want[i].length; k++)
            assert.equal(Math.fround(got[i][k]), Math.fround(want[i][k]),
                         `${what}[${i}][${k}]`);
    }
}

const texts = ['The bat flew out of the cave.', 'a python swallowed a rabbit',
               'Rivers flow to the sea', 'héllo wörld, ünïcode ☃'];
const sockEmbed = await socketCall({ op: 'embed', texts });
assert.equal(sockEmbed.ok, true, JSON.stringify(sockEmbed));
const want = sockEmbed.embeddings;
const stats = await socketCall({ op: 'stats' });
const model = stats.model_id;

// ---- the OpenAI SDK ----------------------------------------------------------
const bodies = [];
const recordingFetch = (url, init) => {
    if (init && typeof init.body === 'string')
        bodies.push(JSON.parse(init.body));
    return fetch(url, init);
};
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key,
                            fetch: recordingFetch, maxRetries: 0 });

const models = await client.models.list();
assert.deepEqual(models.data.map(m => m.id), [model]);

let r = await client.embeddings.create({ model, input: texts });
assert.equal(bodies.at(-1).encoding_format, 'base64',
             'the SDK asked for base64 by default');
assert.deepEqual(r.data.map(d => d.index), [0, 1, 2, 3]);
sameVectors(r.data.map(d => d.embedding), want, 'openai sdk, base64');
assert.equal(r.model, model);
const nTok = sockEmbed.n_tokens.reduce((a, b) => a + b, 0);
assert.equal(r.usage.prompt_tokens, nTok);
assert.equal(r.usage.total_tokens, nTok);

r = await client.embeddings.create({ model, input: texts[1],
                                     encoding_format: 'float' });
sameVectors(r.data.map(d => d.embedding), [want[1]], 'openai sdk, float');

const sock16 = await socketCall({ op: 'embed', texts, dimensions: 16 });
r = await client.embeddings.create({ model, input: texts, dimensions: 16 });
sameVectors(r.data.map(d => d.embedding), sock16.embeddings,
            'openai sdk, dimensions 16');

await assert.rejects(client.embeddings.create({ model: 'no-such-model',
                                                input: 'x' }),
                     e => e.status === 404 && e.code === 'model_not_found');
await assert.rejects(client.embeddings.create({ model, input: [] }),
                     e => e.status === 400 &&
                          e.type === 'invalid_request_error');
const wrong = new OpenAI({ baseURL: `${base}/v1`, apiKey: key + 'x',
                           maxRetries: 0 });
await assert.rejects(wrong.embeddings.create({ model, input: 'x' }),
                     e => e instanceof OpenAI.AuthenticationError &&
                          e.status === 401);
console.log('openai sdk: ok');

// ---- LangChain ------------------------------------------------------------------
const lc = new OpenAIEmbeddings({ model, apiKey: key, maxRetries: 0,
                                  configuration: { baseURL: `${base}/v1` } });
sameVectors(await lc.embedDocuments(texts), want, 'langchain documents');
sameVectors([await lc.embedQuery(texts[2])], [want[2]], 'langchain query');
console.log('langchain: ok');
