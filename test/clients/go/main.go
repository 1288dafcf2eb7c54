// Command clients drives pgx v5 against inbox_outbox, as docs/clients.md
// shows it; test/t/061_clients_jvm_node_go.pl runs it.
//
//	clients publish --dsn URL --topic T
//	clients claim --dsn URL --consumer NAME EVENT_ID...
//
// pgx prepares each statement and encodes every argument to the type the
// server gives its parameter.  Strings therefore work wherever a ulid is
// expected; a UUID value does not (pgx does not know the ulid type and
// sends the UUID's text), so it is written $1::uuid, and bytes for
// outbox_publish() are written $3::bytea.  publish prints {"checks":
// [[name, got, expected], ...], "published": [events]}, claim {"claims":
// [[event_id, first, again], ...]}, for the Perl test to compare.  The
// blocks between "docs:" comments appear verbatim in docs/clients.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dsn := flags.String("dsn", "", "PostgreSQL connection URL")
	topic := flags.String("topic", "", "topic to publish to")
	consumer := flags.String("consumer", "", "inbox consumer name")
	if err := flags.Parse(os.Args[2:]); err != nil || *dsn == "" {
		usage()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		fail(err)
	}
	defer conn.Close(context.Background())

	var out any
	switch {
	case os.Args[1] == "publish" && *topic != "":
		r := &report{Checks: [][3]any{}, Published: []event{}}
		err = r.run(ctx, conn, *topic)
		out = r
	case os.Args[1] == "claim" && *consumer != "":
		var claims [][3]any
		claims, err = claimEvents(ctx, conn, *consumer, flags.Args())
		out = map[string]any{"claims": claims}
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: clients publish --dsn URL --topic T | claim --dsn URL --consumer NAME EVENT_ID...")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "clients:", err)
	os.Exit(1)
}
