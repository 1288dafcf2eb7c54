// Claiming events as a consumer does with the ids that Kafka's event_id
// headers carry: each claimed and applied in one transaction, then handled
// once more, as a redelivery, which must change nothing.

package main

import (
	"context"

	"github.com/jackc/pgx/v5"
)

func claimEvents(ctx context.Context, conn *pgx.Conn, consumer string, eventIDs []string) ([][3]any, error) {
	handle := func(eventID string) (bool, error) {
		// docs: begin go-claim
		var first bool
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			err := tx.QueryRow(ctx, "SELECT inbox_try_claim($1, $2)", eventID, consumer).Scan(&first)
			if err != nil || !first {
				return err
			}
			_, err = tx.Exec(ctx, "INSERT INTO applied_events (consumer, event_id) VALUES ($1, $2)",
				consumer, eventID) // the business change
			return err
		}) // committed: now commit the Kafka offset
		// docs: end go-claim
		return first, err
	}
	claims := [][3]any{}
	for _, id := range eventIDs {
		first, err := handle(id)
		if err != nil {
			return nil, err
		}
		again, err := handle(id)
		if err != nil {
			return nil, err
		}
		claims = append(claims, [3]any{id, first, again})
	}
	return claims, nil
}
