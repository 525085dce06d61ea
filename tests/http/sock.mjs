// tests/http/sock.mjs SOCKET -- send the JSON lines on stdin to sensed's
// Unix socket, one by one, and print each reply line.
import net from 'node:net';
import fs from 'node:fs';

const lines = fs.readFileSync(0, 'utf8').split('\n').filter(l => l.trim());
const s = net.createConnection({ path: process.argv[2] });
let buf = '', n = 0;
s.on('data', d => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
        console.log(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (++n === lines.length) s.end();
    }
});
s.on('error', e => { console.error(`sock.mjs: ${e.message}`); process.exit(1); });
for (const l of lines) s.write(l + '\n');
