// Remove every "resolved" URL from package-lock.json, so the lock names packages and integrity
// hashes only and npm fetches from whatever registry the machine is configured for.
// Run after regenerating the lock: npm install --package-lock-only && node strip-resolved.js
"use strict";
const fs = require("fs");
const path = require("path");

const lockPath = path.join(__dirname, "package-lock.json");
const lock = JSON.parse(fs.readFileSync(lockPath, "utf8"));
let removed = 0;
for (const entry of Object.values(lock.packages || {})) {
  if (entry && Object.prototype.hasOwnProperty.call(entry, "resolved")) {
    delete entry.resolved;
    removed += 1;
  }
}
fs.writeFileSync(lockPath, JSON.stringify(lock, null, 2) + "\n");
console.log(`strip-resolved: removed ${removed} resolved field(s) from ${lockPath}`);
