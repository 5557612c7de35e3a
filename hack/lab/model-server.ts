// The lab upstream's model server, run inside the upstream network namespace: GET of the files in
// one directory over plain HTTP on one address and port, nothing else. It prints "ready" once it
// listens.
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { basename, join } from 'node:path';

const [dir, host, portText] = process.argv.slice(2);
if (!dir || !host || !portText) {
  console.error('usage: model-server.ts <dir> <host> <port>');
  process.exit(2);
}
const files = new Set(readdirSync(dir));

const server = createServer((req, res) => {
  const name = basename(decodeURIComponent(new URL(req.url ?? '/', 'http://lab').pathname));
  if (req.method !== 'GET' || !files.has(name)) {
    res.writeHead(req.method === 'GET' ? 404 : 405).end();
    return;
  }
  const path = join(dir, name);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(path).size });
  createReadStream(path).pipe(res);
  console.log(`GET ${name} from ${req.socket.remoteAddress ?? '?'}`);
});
server.listen(Number(portText), host, () => console.log('ready'));
