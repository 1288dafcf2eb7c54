// The TypeORM entities of test/clients/typeorm/src/clients.ts.
//
// TypeORM knows no ulid type and refuses one it does not know, so each
// ulid column is declared as text: pg sends the value untyped and reads
// it back as a string, the ULID text, and the server takes a string where
// a ulid is expected.  Schema synchronization would then "repair" the
// column into a text one, dropping it first: every entity here has it
// off.  OutboxEvent maps the extension's outbox table; a saved one is
// published when the transaction commits.  Keys with a default are left
// to the server and returned by the INSERT.
import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

// docs: begin typeorm-entities
@Entity({ schema: 'inbox_outbox', name: 'outbox', synchronize: false })
export class OutboxEvent {
  @PrimaryColumn({ type: 'text', default: () => 'gen_ulid()' })  // a ulid, as its text
  id: string;

  @Column('text')
  topic: string;

  @Column('text', { nullable: true })
  key: string | null;

  @Column('bytea', { nullable: true })
  payload: Buffer | null;

  @Column('jsonb', { nullable: true })
  headers: Record<string, string> | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}

@Entity({ name: 'typeorm_accounts', synchronize: false })  // id ulid PRIMARY KEY DEFAULT gen_ulid()
export class Account {
  @PrimaryColumn({ type: 'text', default: () => 'gen_ulid()' })
  id: string;

  @Column('text')
  name: string;
}
// docs: end typeorm-entities

// The consumer's business change, in the table test/t/063_clients_orms.pl
// creates.
@Entity({ name: 'applied_events', synchronize: false })
export class AppliedEvent {
  @PrimaryColumn('text')
  consumer: string;

  @PrimaryColumn({ type: 'text', name: 'event_id' })
  eventId: string;
}
