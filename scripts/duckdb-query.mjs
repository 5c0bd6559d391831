// scripts/duckdb-query.mjs SQL...: run each SQL statement with DuckDB's
// Node.js client (@duckdb/node-api, installed by scripts/duckdb.sh) in a
// fresh in-memory database and print the rows of the last one as a JSON
// array of objects on stdout. Integers that fit a double are numbers,
// larger ones strings; other DuckDB values (dates, timestamps, lists) are
// their text. Exit status 1 with the error on stderr when a statement fails.
//
// The package is loaded from $STRATA_DUCKDB_DIR/node_modules, else from the
// tool cache scripts/duckdb.sh installs into.
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

function duckdbDir() {
  if (process.env.STRATA_DUCKDB_DIR) return process.env.STRATA_DUCKDB_DIR;
  const tools = process.env.STRATA_TOOLS_DIR ||
    join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'strata', 'bin');
  return join(tools, 'duckdb-node');
}

function plain(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') {
    return (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)) ? Number(v) : v.toString();
  }
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map(plain);
  return String(v);
}

const statements = process.argv.slice(2);
if (statements.length === 0) {
  console.error('usage: node scripts/duckdb-query.mjs SQL [SQL...]');
  process.exit(2);
}
try {
  const require = createRequire(join(duckdbDir(), 'package.json'));
  const { DuckDBInstance } = require('@duckdb/node-api');
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  let reader;
  for (const sql of statements) {
    reader = await conn.runAndReadAll(sql);
  }
  const rows = reader.getRowObjects().map((row) => {
    const out = {};
    for (const [k, v] of Object.entries(row)) out[k] = plain(v);
    return out;
  });
  process.stdout.write(JSON.stringify(rows) + '\n');
  conn.closeSync?.();
} catch (err) {
  console.error(`duckdb-query: ${err && err.message ? err.message : err}`);
  process.exit(1);
}
