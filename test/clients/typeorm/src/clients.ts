// TypeORM against inbox_outbox, as docs/clients.md shows it; run by
// test/t/063_clients_orms.pl after `npm ci` and `tsc` (test/clients/build.sh).
//
//   node dist/clients.js publish --dsn URL --topic T
//   node dist/clients.js claim --dsn URL --consumer NAME EVENT_ID...
//
// publish commits business changes with events, through outbox_publish()
// on a QueryRunner and by saving an OutboxEvent, then finds ulid keys by
// their text and by a uuid.  It prints {"checks": [[name, got, expected],
// ...], "published": [events]}; claim prints {"claims": [[event_id, first,
// again], ...]}.  The only casts are those docs/clients.md names.  The
// blocks between "docs:" comments appear verbatim there.  Any unexpected
// error exits non-zero.
import 'reflect-metadata';
import { DataSource, In, QueryFailedError } from 'typeorm';

import { Account, AppliedEvent, OutboxEvent } from './entities';

const ALICE = '01GV5PA9EQG7D82Q3Y4PKBZSYV';               // the same 128 bits as
const ALICE_UUID = '0186cb65-25d7-81da-815c-7e25a6bfe7db'; // this uuid
const BOB = '01GV5PA9EQG7D82Q3Y4PKBZSYW';
const BOB_UUID = '0186cb65-25d7-81da-815c-7e25a6bfe7dc';

type Check = [string, unknown, unknown];
interface Published {
  how: string;
  id: string;
  key: string;
  payload_hex: string;
  headers: Record<string, string>;
}

const checks: Check[] = [];
const published: Published[] = [];

function check(name: string, got: unknown, expected: unknown): void {
  checks.push([name, got, expected]);
}

function record(how: string, id: string, key: string, payload: Buffer,
  headers: Record<string, string>): void {
  published.push({ how, id, key, payload_hex: payload.toString('hex'), headers });
}

async function publishPart(dataSource: DataSource, topic: string): Promise<Account> {
  const payload = JSON.stringify({ event: 'AccountOpened', name: 'alice' });
  // docs: begin typeorm-publish
  const queryRunner = dataSource.createQueryRunner();
  await queryRunner.connect();
  await queryRunner.startTransaction();
  let account: Account;
  let eventId: string;
  try {
    account = await queryRunner.manager.save(Account, { name: 'alice' });  // the business change
    [{ id: eventId }] = await queryRunner.query(
      'SELECT outbox_publish($1, $2, $3, $4) AS id',
      [topic, `account-${account.id}`, payload, JSON.stringify({ trace: 't1' })]);  // '01HX…'
    await queryRunner.commitTransaction();
  } catch (e) {
    await queryRunner.rollbackTransaction();
    throw e;
  } finally {
    await queryRunner.release();
  }
  // docs: end typeorm-publish
  record('TypeORM outbox_publish on a QueryRunner, string payload, headers as JSON text',
    eventId, `account-${account.id}`, Buffer.from(payload), { trace: 't1' });

  // a Buffer takes ::bytea, as with pg alone
  const bytes = Buffer.from([0, 1, 0xfe, 0xff]);
  const [{ id: bytesId }] = await dataSource.query(
    'SELECT outbox_publish($1, $2, $3::bytea) AS id', [topic, 'typeorm-bytes', bytes]);
  record('TypeORM outbox_publish, Buffer with ::bytea', bytesId, 'typeorm-bytes', bytes, {});
  return account;
}

async function saveOutbox(dataSource: DataSource, topic: string, account: Account): Promise<void> {
  // docs: begin typeorm-outbox-save
  const event = await dataSource.transaction(async (manager) => {
    await manager.update(Account, { id: account.id }, { name: 'alice b.' });  // the business change
    return manager.save(OutboxEvent, {
      topic,
      key: 'typeorm-row',
      payload: Buffer.from('{"event": "AccountRenamed"}'),
      headers: { via: 'typeorm' },
    });
  });
  // event.id: the event id, '01HX…'; event.createdAt: the server's clock_timestamp()
  // docs: end typeorm-outbox-save
  check('TypeORM: saved OutboxEvent has the server\'s id and created_at',
    [event.id.length, event.createdAt instanceof Date], [26, true]);
  record('TypeORM OutboxEvent entity, server id', event.id, 'typeorm-row',
    Buffer.from('{"event": "AccountRenamed"}'), { via: 'typeorm' });

  const given = await dataSource.getRepository(OutboxEvent).save({
    id: '01gv5pa9eqg7d82q3y4pkbzt92', topic, key: 'typeorm-given', payload: Buffer.from('given'),
  });
  check('TypeORM: OutboxEvent saved with a lower-case id of its own reads it back upper case',
    given.id, '01GV5PA9EQG7D82Q3Y4PKBZT92');
  record('TypeORM OutboxEvent entity, string id', '01GV5PA9EQG7D82Q3Y4PKBZT92', 'typeorm-given',
    Buffer.from('given'), {});
}

// A transaction that rolls back publishes nothing and changes nothing.
async function rolledBack(dataSource: DataSource, topic: string): Promise<void> {
  const thrown = await dataSource.transaction(async (manager) => {
    await manager.save(Account, { name: 'rolled back' });
    await manager.query('SELECT outbox_publish($1, $2, $3)',
      [topic, 'typeorm-rolled-back', 'never sent']);
    await manager.save(OutboxEvent,
      { topic, key: 'typeorm-rolled-back', payload: Buffer.from('n') });
    throw new Error('rolled back on purpose');
  }).catch((e: Error) => e.message);
  check('TypeORM: a rolled-back transaction left no account and no event',
    [thrown, await dataSource.getRepository(Account).countBy({ name: 'rolled back' }),
      await dataSource.getRepository(OutboxEvent).countBy({ key: 'typeorm-rolled-back' })],
    ['rolled back on purpose', 0, 0]);
}

// The SQLSTATE of the error a query raises, or 'no error'.
async function sqlstate(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'no error';
  } catch (e) {
    if (e instanceof QueryFailedError) return (e.driverError as { code: string }).code;
    throw e;
  }
}

async function findPart(dataSource: DataSource): Promise<void> {
  const repository = dataSource.getRepository(Account);
  await repository.insert([{ id: ALICE.toLowerCase(), name: 'alice' }, { id: BOB, name: 'bob' }]);

  // docs: begin typeorm-find
  const accounts = dataSource.getRepository(Account);
  const alice = await accounts.findOneBy({ id: '01gv5pa9eqg7d82q3y4pkbzsyv' });  // either case
  const some = await accounts.findBy({
    id: In(['01GV5PA9EQG7D82Q3Y4PKBZSYV', '01GV5PA9EQG7D82Q3Y4PKBZSYW']),
  });
  const row = await accounts.createQueryBuilder('account')
    .select('account.id', 'id')
    .addSelect('CAST(account.id AS uuid)', 'uuid')     // not ::uuid beside a :uuid parameter
    .where('account.id = CAST(:uuid AS uuid)', { uuid: '0186cb65-25d7-81da-815c-7e25a6bfe7db' })
    .getRawOne();
  // row: { id: '01GV5PA9EQG7D82Q3Y4PKBZSYV', uuid: '0186cb65-25d7-81da-815c-7e25a6bfe7db' }
  // docs: end typeorm-find
  check('TypeORM: findOneBy id (string, lower case); id read back upper case',
    alice && [alice.id, alice.name], [ALICE, 'alice']);
  check('TypeORM: findBy id In (strings)', some.map((a) => a.name).sort(), ['alice', 'bob']);
  check('TypeORM: id and id::uuid where id = CAST(:uuid AS uuid)', row,
    { id: ALICE, uuid: ALICE_UUID });
  check('TypeORM: a uuid string untyped where a ulid is expected: SQLSTATE',
    await sqlstate(() => accounts.findOneBy({ id: ALICE_UUID })), '22P02');
  check('TypeORM: order by id, id > string',
    (await accounts.createQueryBuilder('a').where('a.id > :id', { id: ALICE.toLowerCase() })
      .andWhere('a.id <= :bob', { bob: BOB }).orderBy('a.id').getMany()).map((a) => a.id),
    [BOB]);
  const updated = await accounts.update({ id: BOB.toLowerCase() },
    { id: '00000000000000000000000007' });
  check('TypeORM: primary key updated with a string', updated.affected, 1);
  check('TypeORM: found by the new id',
    (await accounts.findOneBy({ id: '00000000000000000000000007' }))?.name, 'bob');
}

async function claimPart(dataSource: DataSource): Promise<void> {
  const claim = async (sql: string, id: string) =>
    (await dataSource.query(sql, [id, 'typeorm']))[0].claimed;
  check('TypeORM: inbox_try_claim(string) first',
    await claim('SELECT inbox_try_claim($1, $2) AS claimed', BOB), true);
  check('TypeORM: inbox_try_claim($1::uuid) of the same event',
    await claim('SELECT inbox_try_claim($1::uuid, $2) AS claimed', BOB_UUID), false);
}

// Each event id as a consumer gets it from a Kafka header, handled twice:
// the redelivery must change nothing.
async function claimEvents(dataSource: DataSource, consumer: string, eventIds: string[]) {
  const handle = async (eventId: string): Promise<boolean> => {
    // docs: begin typeorm-claim
    const first: boolean = await dataSource.transaction(async (manager) => {
      const [{ claimed }] = await manager.query(
        'SELECT inbox_try_claim($1, $2) AS claimed', [eventId, consumer]);
      if (claimed) {
        await manager.insert(AppliedEvent, { consumer, eventId });  // the business change
      }
      return claimed;
    });                                             // committed: now commit the Kafka offset
    // docs: end typeorm-claim
    return first;
  };
  const claims: [string, boolean, boolean][] = [];
  for (const eventId of eventIds) {
    claims.push([eventId, await handle(eventId), await handle(eventId)]);
  }
  return claims;
}

function options(args: string[]): { opts: Record<string, string>; rest: string[] } {
  const opts: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith('--')) opts[args[i].slice(2)] = args[++i];
    else rest.push(args[i]);
  }
  return { opts, rest };
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  const { opts, rest } = options(args);
  const dataSource = new DataSource({
    type: 'postgres',
    url: opts.dsn,
    entities: [OutboxEvent, Account, AppliedEvent],
  });
  await dataSource.initialize();
  try {
    if (mode === 'publish') {
      await dataSource.query('CREATE TABLE typeorm_accounts'
        + ' (id ulid PRIMARY KEY DEFAULT gen_ulid(), name text NOT NULL)');
      check('TypeORM: schema synchronization would leave the ulid tables alone',
        (await dataSource.driver.createSchemaBuilder().log()).upQueries.map((q) => q.query), []);
      const account = await publishPart(dataSource, opts.topic);
      await saveOutbox(dataSource, opts.topic, account);
      await rolledBack(dataSource, opts.topic);
      await findPart(dataSource);
      await claimPart(dataSource);
      process.stdout.write(JSON.stringify({ checks, published }));
    } else if (mode === 'claim') {
      const claims = await claimEvents(dataSource, opts.consumer, rest);
      process.stdout.write(JSON.stringify({ claims }));
    } else {
      throw new Error('usage: clients.js publish --dsn URL --topic T'
        + ' | claim --dsn URL --consumer NAME ID...');
    }
  } finally {
    await dataSource.destroy();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
