// What a publish run reports, as python_clients.py does: checks the Perl
// test compares with is_deeply, and the events committed, which it then
// looks for in Kafka.

package main

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5"
)

type event struct {
	How        string            `json:"how"`
	ID         string            `json:"id"`
	Key        string            `json:"key"`
	PayloadHex string            `json:"payload_hex"`
	Headers    map[string]string `json:"headers"`
	CreatedUs  int64             `json:"created_us"`
}

type report struct {
	Checks    [][3]any `json:"checks"`
	Published []event  `json:"published"`
}

func (r *report) check(name string, got, expected any) {
	r.Checks = append(r.Checks, [3]any{name, got, expected})
}

// published remembers a committed event with its created_at in
// microseconds; tx must still see the row.
func (r *report) published(ctx context.Context, tx pgx.Tx, how, id, key string, payload []byte,
	headers map[string]string) error {
	var us int64
	err := tx.QueryRow(ctx, "SELECT (extract(epoch FROM created_at) * 1000000)::int8"+
		" FROM inbox_outbox.outbox WHERE id = $1", id).Scan(&us)
	if err != nil {
		return fmt.Errorf("event %s (%s): %w", id, how, err)
	}
	if headers == nil {
		headers = map[string]string{}
	}
	r.Published = append(r.Published, event{how, id, key, hex.EncodeToString(payload), headers, us})
	return nil
}
