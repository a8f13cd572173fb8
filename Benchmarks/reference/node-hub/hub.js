// node-hub — the plain Node.js `http` SSE hub of the classic tutorial style, for the MicroSSE
// benchmarks: a list of open responses per channel and one res.write() per event per client.
//
//   GET  /events/{channel}   text/event-stream (chunked)
//   POST /events/{channel}   body = data of one event → 202 {"id":"N"}
//   GET  /healthz            200 ok
//
// usage: node hub.js [--host 127.0.0.1] [--port 8080]
'use strict';
const http = require('http');

let host = '127.0.0.1';
let port = 8080;
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const v = process.argv[i + 1];
  if (a === '--host') { host = v; i++; }
  else if (a === '--port') { port = Number(v); i++; }
  else { console.error(`usage: node hub.js [--host H] [--port P]`); process.exit(2); }
}

const channels = new Map(); // name -> Set of responses
let nextId = 1;
const NAME = /^[A-Za-z0-9._~-]{1,128}$/;

function encode(id, data) {
  const lines = data.split(/\r\n|\r|\n/);
  let out = `id: ${id}\n`;
  for (const l of lines) out += `data: ${l}\n`;
  return out + '\n';
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  if (!path.startsWith('/events/')) {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  const name = path.slice(8);
  if (!NAME.test(name)) {
    res.writeHead(400, { 'Content-Type': 'text/plain' });
    res.end('bad channel name\n');
    return;
  }
  if (req.method === 'GET') {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'Connection': 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    let clients = channels.get(name);
    if (!clients) { clients = new Set(); channels.set(name, clients); }
    clients.add(res);
    req.on('close', () => clients.delete(res));
    return;
  }
  if (req.method === 'POST') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const id = nextId++;
      const msg = encode(id, Buffer.concat(chunks).toString('utf8'));
      const clients = channels.get(name);
      if (clients) for (const c of clients) c.write(msg);
      res.writeHead(202, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ id: String(id) }));
    });
    return;
  }
  res.writeHead(405, { 'Allow': 'GET, POST', 'Content-Type': 'text/plain' });
  res.end('method not allowed\n');
});

// Streams are long-lived; publishers keep their connections alive between bursts.
server.keepAliveTimeout = 60000;
server.requestTimeout = 0;
server.headersTimeout = 60000;

server.listen(port, host, () => {
  console.error(`node-hub: listening on http://${host}:${server.address().port}/`);
});

function shutdown() {
  for (const clients of channels.values()) for (const c of clients) c.end();
  server.close(() => process.exit(0));
  // ended streams and idle publisher connections are closed once their final bytes are out
  setTimeout(() => server.closeIdleConnections && server.closeIdleConnections(), 50).unref();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
