// The pgx checks of a publish run: publishing, the outbox table, a table
// of the application's with a ulid key, and claims.

package main

import (
	"context"
	"encoding/hex"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// The same 128 bits as a ULID's text and as a UUID.
const (
	alice = "01GV5PA9EQG7D82Q3Y4PKBZSYV"
	bob   = "01GV5PA9EQG7D82Q3Y4PKBZSYW"
	// ulid_timestamp(alice) in milliseconds since 1970
	aliceMs = 1678449649111
	hint    = "An untyped parameter of outbox_publish() is read as text. To publish bytes, " +
		"bind the payload as bytea or cast its parameter, as in outbox_publish($1, $2, $3::bytea)."
)

var (
	aliceUUID = pgtype.UUID{Bytes: [16]byte{0x01, 0x86, 0xcb, 0x65, 0x25, 0xd7, 0x81, 0xda,
		0x81, 0x5c, 0x7e, 0x25, 0xa6, 0xbf, 0xe7, 0xdb}, Valid: true}
	bobUUID = [16]byte{0x01, 0x86, 0xcb, 0x65, 0x25, 0xd7, 0x81, 0xda,
		0x81, 0x5c, 0x7e, 0x25, 0xa6, 0xbf, 0xe7, 0xdc}
)

func (r *report) run(ctx context.Context, conn *pgx.Conn, topic string) error {
	for _, part := range []func(context.Context, pgx.Tx, string) error{
		r.publish, r.table, r.claims,
	} {
		// one transaction each, so that an event's created_at is read
		// before the relay can send and delete it
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return part(ctx, tx, topic) }); err != nil {
			return err
		}
	}
	return nil
}

// failure runs a statement that should fail, in a savepoint, and returns
// its SQLSTATE and hint, or "no error".
func failure(ctx context.Context, tx pgx.Tx, sql string, args ...any) any {
	var pgErr *pgconn.PgError
	err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		_, err := sp.Exec(ctx, sql, args...)
		return err
	})
	if errors.As(err, &pgErr) {
		var h any
		if pgErr.Hint != "" {
			h = pgErr.Hint
		}
		return []any{pgErr.Code, h}
	}
	if err != nil {
		return err.Error()
	}
	return "no error"
}

func (r *report) publish(ctx context.Context, tx pgx.Tx, topic string) error {
	payload := []byte{0, 1, 0xfe, 0xff}
	// docs: begin go-publish
	var eventID string
	err := tx.QueryRow(ctx, "SELECT outbox_publish($1, $2, $3::bytea, $4)",
		topic, "go-bytes", payload /* []byte */, `{"trace": "t1"}`).Scan(&eventID)
	// docs: end go-publish
	if err != nil {
		return err
	}
	if err := r.published(ctx, tx, "pgx []byte with $3::bytea, headers as string", eventID,
		"go-bytes", payload, map[string]string{"trace": "t1"}); err != nil {
		return err
	}

	text := "plain text é"
	if err := tx.QueryRow(ctx, "SELECT outbox_publish($1, $2, $3, $4)",
		topic, "go-text", text, `{"kind": "text"}`).Scan(&eventID); err != nil {
		return err
	}
	if err := r.published(ctx, tx, "pgx string payload, headers as string", eventID, "go-text",
		[]byte(text), map[string]string{"kind": "text"}); err != nil {
		return err
	}

	// []byte without a cast reaches the text overload: UTF-8 goes through,
	// anything else fails with a hint that names bytea
	utf8 := []byte("naïve €")
	if err := tx.QueryRow(ctx, "SELECT outbox_publish($1, $2, $3)", topic, "go-utf8", utf8).Scan(&eventID); err != nil {
		return err
	}
	if err := r.published(ctx, tx, "pgx UTF-8 []byte without a cast", eventID, "go-utf8", utf8, nil); err != nil {
		return err
	}
	r.check("pgx: []byte that is not UTF-8, without a cast: SQLSTATE and hint",
		failure(ctx, tx, "SELECT outbox_publish($1, $2, $3)", topic, "go-raw", payload),
		[]any{"22021", hint})

	// QueryExecModeExec and the simple protocol send []byte as bytea's
	// text, \x…: without the cast that text would be the payload
	var stored []byte
	err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		var id string
		if err := sp.QueryRow(ctx, "SELECT outbox_publish($1, $2, $3)", pgx.QueryExecModeExec,
			topic, "go-exec", payload).Scan(&id); err != nil {
			return err
		}
		if err := sp.QueryRow(ctx, "SELECT payload FROM inbox_outbox.outbox WHERE id = $1", id).Scan(&stored); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	r.check("pgx QueryExecModeExec: []byte without a cast is published as its \\x text",
		[]any{err.Error(), string(stored)}, []any{"roll back", `\x0001feff`})
	if err := tx.QueryRow(ctx, "SELECT outbox_publish($1, $2, $3::bytea)", pgx.QueryExecModeExec,
		topic, "go-exec-bytea", payload).Scan(&eventID); err != nil {
		return err
	}
	if err := r.published(ctx, tx, "pgx QueryExecModeExec []byte with $3::bytea", eventID,
		"go-exec-bytea", payload, nil); err != nil {
		return err
	}

	// the outbox table written directly: []byte fills the bytea column
	// docs: begin go-outbox-insert
	err = tx.QueryRow(ctx, "INSERT INTO inbox_outbox.outbox (topic, key, payload, headers)"+
		" VALUES ($1, $2, $3, $4) RETURNING id",
		topic, "go-row", []byte{0xff, 0}, `{"via": "pgx"}`).Scan(&eventID)
	// docs: end go-outbox-insert
	if err != nil {
		return err
	}
	return r.published(ctx, tx, "pgx insert into the outbox, []byte payload", eventID, "go-row",
		[]byte{0xff, 0}, map[string]string{"via": "pgx"})
}

func (r *report) table(ctx context.Context, tx pgx.Tx, _ string) error {
	if _, err := tx.Exec(ctx, "CREATE TABLE go_accounts (id ulid PRIMARY KEY, name text NOT NULL)"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO go_accounts (id, name) VALUES ($1, $2)", alice, "alice"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO go_accounts (id, name) VALUES ($1::uuid, $2)", bobUUID, "bob"); err != nil {
		return err
	}

	// docs: begin go-find
	var name string
	err := tx.QueryRow(ctx, "SELECT name FROM go_accounts WHERE id = $1",
		"01gv5pa9eqg7d82q3y4pkbzsyv").Scan(&name) // a string, either case
	// docs: end go-find
	if err != nil {
		return err
	}
	r.check("pgx: WHERE id = string (lower case)", name, "alice")
	// docs: begin go-find-uuid
	err = tx.QueryRow(ctx, "SELECT name FROM go_accounts WHERE id = $1::uuid",
		aliceUUID /* pgtype.UUID or [16]byte */).Scan(&name)
	// docs: end go-find-uuid
	if err != nil {
		return err
	}
	r.check("pgx: WHERE id = $1::uuid with pgtype.UUID", name, "alice")
	if err := tx.QueryRow(ctx, "SELECT name FROM go_accounts WHERE id = $1::uuid", bobUUID).Scan(&name); err != nil {
		return err
	}
	r.check("pgx: WHERE id = $1::uuid with [16]byte", name, "bob")
	r.check("pgx: pgtype.UUID without ::uuid where a ulid is expected: SQLSTATE",
		failure(ctx, tx, "SELECT name FROM go_accounts WHERE id = $1", aliceUUID), []any{"22P02", nil})
	err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		_, err := sp.Exec(ctx, "SELECT name FROM go_accounts WHERE id = $1", bobUUID)
		return err
	})
	var pgErr *pgconn.PgError
	r.check("pgx: [16]byte without ::uuid where a ulid is expected: pgx cannot encode it",
		err != nil && !errors.As(err, &pgErr), true)

	var n int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM go_accounts WHERE id = ANY ($1)",
		[]string{alice, "00000000000000000000000000", bob}).Scan(&n); err != nil {
		return err
	}
	r.check("pgx: WHERE id = ANY ([]string)", n, 2)

	// docs: begin go-read
	var s string
	var u pgtype.UUID
	var b [16]byte
	err = tx.QueryRow(ctx, "SELECT id, id::uuid, id::uuid FROM go_accounts WHERE id = $1",
		alice).Scan(&s, &u, &b) // "01GV5PA9EQG7D82Q3Y4PKBZSYV", 0186cb65-…, the same 16 bytes
	// docs: end go-read
	if err != nil {
		return err
	}
	var scanned any
	err = tx.QueryRow(ctx, "SELECT id FROM go_accounts WHERE id = $1", alice).Scan(&scanned)
	r.check("pgx: scanning a ulid into any fails", err != nil, true)
	r.check("pgx: scan a ulid into string, id::uuid into pgtype.UUID and [16]byte",
		[]any{s, hex.EncodeToString(u.Bytes[:]), hex.EncodeToString(b[:])},
		[]any{alice, hex.EncodeToString(aliceUUID.Bytes[:]), hex.EncodeToString(aliceUUID.Bytes[:])})

	var lo, hi string
	var later int64
	if err := tx.QueryRow(ctx, "SELECT min(id), max(id), count(*) FILTER (WHERE id > $1) FROM go_accounts",
		alice).Scan(&lo, &hi, &later); err != nil {
		return err
	}
	r.check("pgx: min(id), max(id), id > string", []any{lo, hi, later}, []any{alice, bob, 1})

	var ts pgtype.Timestamptz
	if err := tx.QueryRow(ctx, "SELECT ulid_timestamp($1)", alice).Scan(&ts); err != nil {
		return err
	}
	r.check("pgx: ulid_timestamp(string)", ts.Time.UnixMilli(), aliceMs)

	tag, err := tx.Exec(ctx, "UPDATE go_accounts SET id = $1 WHERE id = $2", "00000000000000000000000007", bob)
	if err != nil {
		return err
	}
	r.check("pgx: UPDATE SET id = string", tag.RowsAffected(), 1)
	return nil
}

func (r *report) claims(ctx context.Context, tx pgx.Tx, _ string) error {
	claim := func(sql string, id any) (bool, error) {
		var ok bool
		err := tx.QueryRow(ctx, sql, id, "pgx").Scan(&ok)
		return ok, err
	}
	for _, c := range []struct {
		name, sql string
		id        any
		expected  bool
	}{
		{"pgx: inbox_try_claim(string) first", "SELECT inbox_try_claim($1, $2)", bob, true},
		{"pgx: inbox_try_claim(string) again", "SELECT inbox_try_claim($1, $2)", bob, false},
		{"pgx: inbox_try_claim($1::uuid) of the same event", "SELECT inbox_try_claim($1::uuid, $2)", bobUUID, false},
		// without ::uuid the text overload takes the UUID's text as an id of its own
		{"pgx: inbox_try_claim(pgtype.UUID) without ::uuid claims its text, another id",
			"SELECT inbox_try_claim($1, $2)", pgtype.UUID{Bytes: bobUUID, Valid: true}, true},
	} {
		got, err := claim(c.sql, c.id)
		if err != nil {
			return err
		}
		r.check(c.name, got, c.expected)
	}
	return nil
}
