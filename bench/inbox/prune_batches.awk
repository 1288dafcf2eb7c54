# Reads the server log that auto_explain wrote during CALL inbox_prune()
# and prints: the number of batches (the procedure's DELETEs), how many of
# their plans found the rows by Seq Scan and by Index Scan on claimed_at,
# then the mean ms per batch over each tenth of the batches, in order.
/ LOG: +duration: [0-9.]+ ms +plan:/ {
	match($0, /duration: [0-9.]+ ms/)
	d = substr($0, RSTART + 10, RLENGTH - 13) + 0
	entry = 1
	ours = 0
	next
}
/ LOG: / { entry = 0; ours = 0; next }
entry && /Query Text: WITH gone AS \( DELETE FROM inbox_outbox\.inbox WHERE ctid/ { ms[++n] = d; ours = 1; next }
ours && /Seq Scan on inbox / { seq++ }
ours && /Index Scan using inbox_claimed_at on inbox / { byindex++ }
END {
	printf "%d %d %d", n, seq, byindex
	for (t = 0; t < 10 && n >= 10; t++) {
		s = 0
		for (i = int(t * n / 10) + 1; i <= int((t + 1) * n / 10); i++)
			s += ms[i]
		printf " %.0f", s / (int((t + 1) * n / 10) - int(t * n / 10))
	}
	printf "\n"
}
