// tests/http/raw.mjs HOST PORT KEY IDLE_MS -- sensed --http at the byte
// level, with node's own sockets: pipelining, keep-alive, chunked bodies,
// Expect: 100-continue, a slow client that sends its body a byte at a
// time while other clients are served, the idle timeout, malformed
// requests. Exits 1 on the first failure.
import assert from 'node:assert/strict';
import net from 'node:net';

const [host, portS, key, idleS] = process.argv.slice(2);
const port = Number(portS), idleMs = Number(idleS);
const auth = `Authorization: Bearer ${key}\r\n`;
const sleep = ms => new Promise(r => setTimeout(r, ms));

// A connection that collects what it receives and parses responses.
function connect() {
    const s = net.createConnection({ host, port });
    s.setNoDelay(true);
    const c = { s, buf: Buffer.alloc(0), closed: false, waiters: [] };
    const wake = () => { for (const w of c.waiters.splice(0)) w(); };
    s.on('data', d => { c.buf = Buffer.concat([c.buf, d]); wake(); });
    s.on('close', () => { c.closed = true; wake(); });
    s.on('error', () => {});
    return new Promise(r => s.on('connect', () => r(c)));
}

// The next response: {status, headers, body}; null when the connection
// closed first.
async function response(c, timeoutMs = 10000) {
    const t0 = Date.now();
    for (;;) {
        const end = c.buf.indexOf('\r\n\r\n');
        if (end >= 0) {
            const head = c.buf.subarray(0, end).toString('latin1').split('\r\n');
            const status = Number(head[0].split(' ')[1]);
            const headers = {};
            for (const l of head.slice(1)) {
                const i = l.indexOf(':');
                headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
            }
            const len = Number(headers['content-length'] || 0);
            if (status === 100) {
                c.buf = c.buf.subarray(end + 4);
                return { status, headers, body: '' };
            }
            if (c.buf.length >= end + 4 + len) {
                const body = c.buf.subarray(end + 4, end + 4 + len).toString();
                c.buf = c.buf.subarray(end + 4 + len);
                return { status, headers, body };
            }
        }
        if (c.closed)
            return null;
        const left = timeoutMs - (Date.now() - t0);
        if (left <= 0)
            throw new Error('no response in time');
        await new Promise(r => { c.waiters.push(r); setTimeout(r, left); });
    }
}

function post(path, body, extra = '') {
    return `POST ${path} HTTP/1.1\r\nHost: t\r\n${auth}${extra}` +
           `Content-Type: application/json\r\n` +
           `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

const embedBody = t => JSON.stringify({ inputs: t, normalize: false });

// pipelining: three requests in one write, three responses in order
{
    const c = await connect();
    c.s.write(`GET /health HTTP/1.1\r\nHost: t\r\n\r\n` +
              post('/embed', embedBody('one')) + post('/embed', embedBody('two')) +
              `GET /v1/models HTTP/1.1\r\nHost: t\r\n${auth}\r\n`);
    const r = [];
    for (let i = 0; i < 4; i++)
        r.push(await response(c));
    assert.deepEqual(r.map(x => x.status), [200, 200, 200, 200]);
    assert.equal(JSON.parse(r[0].body).status, 'ok');
    const one = JSON.parse(r[1].body), two = JSON.parse(r[2].body);
    assert.equal(one.length, 1);
    assert.notDeepEqual(one, two);
    assert.equal(JSON.parse(r[3].body).object, 'list');
    // keep-alive: the same connection goes on
    c.s.write(post('/embed', embedBody('one')));
    assert.deepEqual(JSON.parse((await response(c)).body), one);
    c.s.end();
    console.log('pipelining, keep-alive: ok');
}

// a chunked body, in pieces
{
    const c = await connect();
    const body = embedBody(['chunked', 'body']);
    c.s.write(`POST /embed HTTP/1.1\r\nHost: t\r\n${auth}` +
              `Transfer-Encoding: chunked\r\n\r\n`);
    for (let i = 0; i < body.length; i += 7) {
        const part = body.slice(i, i + 7);
        c.s.write(`${part.length.toString(16)}\r\n${part}\r\n`);
        await sleep(2);
    }
    c.s.write('0\r\n\r\n');
    const r = await response(c);
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).length, 2);
    c.s.end();
    console.log('chunked: ok');
}

// Expect: 100-continue: the interim response comes before the body is sent
{
    const c = await connect();
    const body = embedBody('continue');
    c.s.write(`POST /embed HTTP/1.1\r\nHost: t\r\n${auth}Expect: 100-continue\r\n` +
              `Content-Length: ${body.length}\r\n\r\n`);
    const r100 = await response(c, 3000);
    assert.equal(r100.status, 100);
    c.s.write(body);
    const r = await response(c);
    assert.equal(r.status, 200);
    // with a bad key, the final answer comes at once, not a 100
    c.s.write(`POST /embed HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer no\r\n` +
              `Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`);
    const r401 = await response(c, 3000);
    assert.equal(r401.status, 401);
    assert.equal(r401.headers['www-authenticate'], 'Bearer');
    console.log('expect 100-continue: ok');
}

// a slow client sending its body a byte at a time does not hold up the
// others: 20 requests on other connections are answered meanwhile
{
    const slow = await connect();
    const body = embedBody('slow and steady');
    slow.s.write(`POST /embed HTTP/1.1\r\nHost: t\r\n${auth}` +
                 `Content-Length: ${body.length}\r\n\r\n`);
    let sent = 0, slowDone = false;
    const trickle = (async () => {
        for (; sent < body.length; sent++) {
            slow.s.write(body[sent]);
            await sleep(25);
        }
        slowDone = true;
    })();
    const t0 = Date.now(), lat = [];
    const fast = await connect();
    for (let i = 0; i < 20; i++) {
        const t = Date.now();
        fast.s.write(post('/embed', embedBody(`fast ${i}`)));
        const r = await response(fast);
        assert.equal(r.status, 200);
        lat.push(Date.now() - t);
    }
    const fastMs = Date.now() - t0;
    assert.ok(!slowDone, 'the fast requests finished before the slow body');
    assert.ok(Math.max(...lat) < 500,
              `fast requests waited on the slow client: ${lat}`);
    await trickle;
    const r = await response(slow);
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).length, 1);
    console.log(`slow client: ok (20 others in ${fastMs} ms, slowest ` +
                `${Math.max(...lat)} ms, while its ${body.length} bytes took ` +
                `${Date.now() - t0} ms)`);
    slow.s.end();
    fast.s.end();
}

// backpressure: a client that pipelines 100 big requests and reads
// nothing is paused (the daemon stops reading it; http_api.sh finds
// "paused" in the log) while another is served at once; then it gets all
// 100 responses, in order
{
    const greedy = await connect();
    const texts = Array.from({ length: 16 }, (_, i) =>
        `backpressure text number ${i} with a few more words in it`);
    let all = '';
    for (let i = 0; i < 100; i++)
        all += post('/embed_all', JSON.stringify({ inputs: [`#${i}`, ...texts] }));
    greedy.s.pause(); /* read nothing */
    greedy.s.write(all);
    await sleep(1000);
    const other = await connect();
    const t = Date.now();
    other.s.write(post('/embed', embedBody('meanwhile')));
    const r = await response(other);
    assert.equal(r.status, 200);
    const waited = Date.now() - t;
    /* not held until the greedy one reads: answered while it is paused
     * (the bound is loose: the machine may be loaded) */
    assert.ok(waited < 5000, `the other client waited ${waited} ms`);
    other.s.end();
    greedy.s.resume();
    let first = null;
    for (let i = 0; i < 100; i++) {
        const g = await response(greedy, 30000);
        assert.equal(g.status, 200);
        const v = JSON.parse(g.body);
        assert.equal(v.length, 17);
        if (i === 0)
            first = v[1];
        else
            assert.deepEqual(v[1], first); /* the same text, the same states */
    }
    greedy.s.end();
    console.log(`backpressure: ok (another client served in ${waited} ms)`);
}

// the idle timeout closes a silent connection, and one that stops
// mid-request; a connection in use is not closed
{
    const t0 = Date.now();
    const a = await connect();
    const b = await connect();
    b.s.write(`POST /embed HTTP/1.1\r\nHost: t\r\n${auth}Content-Length: 100\r\n\r\n{"in`);
    while (!a.closed && Date.now() - t0 < idleMs * 5)
        await sleep(20);
    const dt = Date.now() - t0;
    assert.ok(a.closed, 'idle connection closed');
    assert.ok(dt >= idleMs * 0.8 && dt < idleMs * 4, `closed after ${dt} ms`);
    await sleep(200);
    assert.ok(b.closed, 'stalled request closed');
    console.log(`idle timeout: ok (${dt} ms for ${idleMs} ms)`);
}

// malformed requests: 400, then the connection closes
{
    const c = await connect();
    c.s.write('BLAH / HTTP/1.1\r\n\r\n');
    const r = await response(c);
    assert.equal(r.status, 400);
    assert.equal(r.headers.connection, 'close');
    assert.equal(await response(c), null);
    const d = await connect();
    d.s.write(`POST /embed HTTP/1.1\r\nHost: t\r\n${auth}Content-Length: 12\r\n\r\n{"inputs": 1`);
    const r2 = await response(d);
    assert.equal(r2.status, 400);
    const e = JSON.parse(r2.body);
    assert.equal(e.error_type, 'Validation');
    console.log('malformed: ok');
}
