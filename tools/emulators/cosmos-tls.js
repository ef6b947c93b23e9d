// Launch @vercel/cosmosdb-server over TLS with the given certificate and HTTP keep-alive.
// Usage: node cosmos-tls.js <host> <port|0> <cert.pem> <key.pem>
// Why not the package's CLI: its bundled certificate expired in 2021 and has no SAN, and it
// answers every request with "connection: close" (about 20x slower). Prints the bound port.
"use strict";
const fs = require("fs");
const { createHttpsServer } = require("@vercel/cosmosdb-server");

const [host, port, cert, key] = process.argv.slice(2);
if (!host || port === undefined || !cert || !key) {
  console.error("usage: node cosmos-tls.js <host> <port|0> <cert.pem> <key.pem>");
  process.exit(2);
}
const server = createHttpsServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  keepAlive: true,
});
server.listen(Number(port), host, () => {
  console.log(`cosmosdb-server listening on https://${host}:${server.address().port}/`);
});
function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive sockets would otherwise hold close() open
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
