// node-postgres against inbox_outbox, as docs/clients.md shows it; run by
// test/t/061_clients_jvm_node_go.pl after `npm ci`.
//
//   node clients.js publish --dsn URL --topic T
//   node clients.js claim --dsn URL --consumer NAME EVENT_ID...
//
// pg sends every parameter untyped: strings as text, Buffers in binary
// format.  The server resolves them to ulid, text or bytea by context, so
// no SQL here casts a ULID; the casts left are those docs/clients.md names
// (::bytea for a Buffer to outbox_publish(), ::uuid for a uuid string).
// publish prints {"checks": [[name, got, expected], ...], "published":
// [events]}, claim {"claims": [[event_id, first, again], ...]}, for the
// Perl test to compare.  The blocks between "docs:" comments appear
// verbatim in docs/clients.md.  Any unexpected error exits non-zero.
'use strict';

const { Client } = require('pg');

const ALICE = '01GV5PA9EQG7D82Q3Y4PKBZSYV';          // the same 128 bits as
const ALICE_UUID = '0186cb65-25d7-81da-815c-7e25a6bfe7db'; // this uuid
const BOB = '01GV5PA9EQG7D82Q3Y4PKBZSYW';
const ALICE_MS = 1678449649111;                      // ulid_timestamp(ALICE)
const HINT = 'An untyped parameter of outbox_publish() is read as text. To publish bytes, ' +
  'bind the payload as bytea or cast its parameter, as in outbox_publish($1, $2, $3::bytea).';

const checks = [];
const published = [];

function check(name, got, expected) {
  checks.push([name, got, expected]);
}

// Remember a committed event with its created_at in microseconds.
async function record(client, how, id, key, payload, headers) {
  const { rows } = await client.query(
    'SELECT (extract(epoch FROM created_at) * 1000000)::int8 AS us FROM inbox_outbox.outbox WHERE id = $1',
    [id]);
  if (rows.length !== 1) throw new Error(`event ${id} is not in the outbox`);
  published.push({
    how, id, key,
    payload_hex: Buffer.from(payload).toString('hex'),
    headers, created_us: Number(rows[0].us),
  });
}

// The SQLSTATE and hint of the error a query raises, or 'no error'.
async function failure(client, text, values) {
  await client.query('SAVEPOINT attempt');
  try {
    await client.query(text, values);
    return 'no error';
  } catch (e) {
    await client.query('ROLLBACK TO SAVEPOINT attempt');
    return [e.code, e.hint ?? null];
  }
}

async function publishPart(client, topic) {
  await client.query('BEGIN');
  const bytes = Buffer.from([0, 1, 0xfe, 0xff]);
  // docs: begin node-publish
  const { rows } = await client.query(
    'SELECT outbox_publish($1, $2, $3::bytea, $4) AS id',   // ::bytea for a Buffer
    [topic, 'node-bytes', bytes, JSON.stringify({ trace: 't1' })]);
  const eventId = rows[0].id;                               // '01HX…'

  const doc = { event: 'OrderPaid', total: '12.50' };
  const sent = await client.query(
    'SELECT outbox_publish($1, $2, $3) AS id',              // JSON text as sent
    [topic, 'node-json', doc]);
  // docs: end node-publish
  await record(client, 'pg Buffer with $3::bytea, headers as JSON text', eventId, 'node-bytes',
    bytes, { trace: 't1' });
  await record(client, 'pg object payload (JSON text)', sent.rows[0].id, 'node-json',
    Buffer.from(JSON.stringify(doc)), {});

  const text = 'plain text é';
  let r = await client.query('SELECT outbox_publish($1, $2, $3, $4) AS id',
    [topic, 'node-text', text, '{"kind": "text"}']);
  await record(client, 'pg string payload, headers as JSON text', r.rows[0].id, 'node-text',
    Buffer.from(text), { kind: 'text' });

  // an untyped Buffer reaches the text overload: UTF-8 goes through,
  // anything else fails with a hint that names bytea
  const utf8 = Buffer.from('naïve €');
  r = await client.query('SELECT outbox_publish($1, $2, $3) AS id', [topic, 'node-utf8', utf8]);
  await record(client, 'pg UTF-8 Buffer untyped', r.rows[0].id, 'node-utf8', utf8, {});
  check('pg: a Buffer that is not UTF-8, untyped: SQLSTATE and hint',
    await failure(client, 'SELECT outbox_publish($1, $2, $3)', [topic, 'node-raw', bytes]),
    ['22021', HINT]);

  // the outbox table written directly: a Buffer fills the bytea column
  // docs: begin node-outbox-insert
  const row = await client.query(
    'INSERT INTO inbox_outbox.outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4) RETURNING id',
    [topic, 'node-row', Buffer.from([0xff, 0]), JSON.stringify({ via: 'pg' })]);
  // docs: end node-outbox-insert
  await record(client, 'pg insert into the outbox, Buffer payload', row.rows[0].id, 'node-row',
    Buffer.from([0xff, 0]), { via: 'pg' });
  await client.query('COMMIT');
}

async function tablePart(client) {
  let r;
  await client.query('CREATE TABLE node_accounts (id ulid PRIMARY KEY, name text NOT NULL)');
  await client.query('INSERT INTO node_accounts (id, name) VALUES ($1, $2), ($3, $4)',
    [ALICE, 'alice', BOB.toLowerCase(), 'bob']);

  // docs: begin node-find
  const byText = await client.query('SELECT name FROM node_accounts WHERE id = $1',
    ['01gv5pa9eqg7d82q3y4pkbzsyv']);                       // either case
  const byUuid = await client.query('SELECT name FROM node_accounts WHERE id = $1::uuid',
    ['0186cb65-25d7-81da-815c-7e25a6bfe7db']);             // a uuid string needs ::uuid
  const { rows } = await client.query('SELECT id, id::uuid AS uuid FROM node_accounts WHERE id = ANY ($1)',
    [['01GV5PA9EQG7D82Q3Y4PKBZSYV']]);
  // rows[0].id: '01GV5PA9EQG7D82Q3Y4PKBZSYV', rows[0].uuid: '0186cb65-25d7-81da-815c-7e25a6bfe7db'
  // docs: end node-find
  check('pg: WHERE id = string (lower case)', byText.rows, [{ name: 'alice' }]);
  check('pg: WHERE id = $1::uuid', byUuid.rows, [{ name: 'alice' }]);
  check('pg: WHERE id = ANY (array of strings); id and id::uuid as strings', rows,
    [{ id: ALICE, uuid: ALICE_UUID }]);

  await client.query('BEGIN');
  check('pg: a uuid string untyped where a ulid is expected: SQLSTATE',
    await failure(client, 'SELECT name FROM node_accounts WHERE id = $1', [ALICE_UUID]),
    ['22P02', null]);
  await client.query('COMMIT');

  const named = { name: 'account-by-id', text: 'SELECT name FROM node_accounts WHERE id = $1' };
  const names = [];
  for (const id of [BOB, ALICE.toLowerCase(), BOB]) {
    names.push((await client.query({ ...named, values: [id] })).rows[0].name);
  }
  check('pg: a named prepared statement, three times', names, ['bob', 'alice', 'bob']);

  r = await client.query(
    'SELECT min(id), max(id), count(*) FILTER (WHERE id > $1) AS later FROM node_accounts', [ALICE]);
  check('pg: min(id), max(id), id > string', r.rows, [{ min: ALICE, max: BOB, later: '1' }]);
  r = await client.query('SELECT ulid_timestamp($1) AS ts', [ALICE.toLowerCase()]);
  check('pg: ulid_timestamp(string)', r.rows[0].ts.getTime(), ALICE_MS);
  r = await client.query('UPDATE node_accounts SET id = $1 WHERE id = $2',
    ['00000000000000000000000007', BOB]);
  check('pg: UPDATE SET id = string', r.rowCount, 1);
}

async function claimPart(client) {
  const claim = async (sql, id) => (await client.query(sql, [id, 'pg'])).rows[0].ok;
  check('pg: inbox_try_claim(string) first',
    await claim('SELECT inbox_try_claim($1, $2) AS ok', BOB), true);
  check('pg: inbox_try_claim(string) again',
    await claim('SELECT inbox_try_claim($1, $2) AS ok', BOB), false);
  check('pg: inbox_try_claim($1::uuid) of the same event',
    await claim('SELECT inbox_try_claim($1::uuid, $2) AS ok', '0186cb65-25d7-81da-815c-7e25a6bfe7dc'),
    false);
  // without ::uuid the text overload takes the uuid string as an id of its own
  check('pg: inbox_try_claim(uuid string untyped) claims that text, another id',
    await claim('SELECT inbox_try_claim($1, $2) AS ok', '0186cb65-25d7-81da-815c-7e25a6bfe7dc'),
    true);
}

// Each event id as a consumer gets it from a Kafka header: claimed, and
// the business change made, in one transaction; then once more, as a
// redelivery, which must change nothing.
async function claimEvents(client, consumer, eventIds) {
  const handle = async (eventId) => {
    // docs: begin node-claim
    await client.query('BEGIN');
    const { rows } = await client.query('SELECT inbox_try_claim($1, $2) AS first', [eventId, consumer]);
    if (rows[0].first) {
      await client.query('INSERT INTO applied_events (consumer, event_id) VALUES ($1, $2)',
        [consumer, eventId]);                               // the business change
    }
    await client.query('COMMIT');                           // then commit the Kafka offset
    // docs: end node-claim
    return rows[0].first;
  };
  const claims = [];
  for (const eventId of eventIds) {
    claims.push([eventId, await handle(eventId), await handle(eventId)]);
  }
  return claims;
}

function options(args) {
  const opts = { rest: [] };
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith('--')) opts[args[i].slice(2)] = args[++i];
    else opts.rest.push(args[i]);
  }
  return opts;
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  const opts = options(args);
  const client = new Client({ connectionString: opts.dsn });
  await client.connect();
  try {
    if (mode === 'publish') {
      await publishPart(client, opts.topic);
      await tablePart(client);
      await claimPart(client);
      process.stdout.write(JSON.stringify({ checks, published }));
    } else if (mode === 'claim') {
      const claims = await claimEvents(client, opts.consumer, opts.rest);
      process.stdout.write(JSON.stringify({ claims }));
    } else {
      throw new Error('usage: clients.js publish --dsn URL --topic T | claim --dsn URL --consumer NAME ID...');
    }
  } finally {
    await client.end();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
