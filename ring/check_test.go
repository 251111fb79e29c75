package ring

import (
	"fmt"
	"sort"
)

// checkProducerDeath checks what a consumer received after a producer
// that was sending 1, 2, 3... in order died and was recovered: values
// arrive in order, none twice, none both received and orphaned, and the
// values accounted for are exactly 1..K, where K covers every value whose
// enqueue had returned (completed) and no value the producer had not yet
// handed to the ring (K <= handed).
func checkProducerDeath(received []uint32, orphans []Orphan, completed, handed uint32) error {
	seen := map[uint32]string{}
	var last uint32
	for _, v := range received {
		if v <= last {
			return fmt.Errorf("received %d after %d", v, last)
		}
		last = v
		seen[v] = "received"
	}
	for _, o := range orphans {
		if o.Kind == Enqueued {
			if seen[o.Value] != "received" {
				return fmt.Errorf("value %d reported enqueued but not received", o.Value)
			}
			continue
		}
		if o.Kind != NotEnqueued {
			return fmt.Errorf("producer orphan %d has kind %v", o.Value, o.Kind)
		}
		if seen[o.Value] != "" {
			return fmt.Errorf("value %d both %s and reported not enqueued", o.Value, seen[o.Value])
		}
		seen[o.Value] = "orphan"
	}
	k := uint32(len(seen))
	if k < completed || k > handed {
		return fmt.Errorf("%d values accounted for, want between %d and %d (received %v, orphans %v)",
			k, completed, handed, received, orphans)
	}
	for v := uint32(1); v <= k; v++ {
		if seen[v] == "" {
			return fmt.Errorf("value %d lost (received %v, orphans %v)", v, received, orphans)
		}
	}
	return nil
}

// checkConsumerDeath checks the values 1..total after a consumer died:
// logged is what the dead consumer recorded, rest what another consumer
// drained afterwards. Each value is seen exactly once, except that a value
// recovery reports as MaybeDelivered may also be in the log.
func checkConsumerDeath(logged, rest []uint32, orphans []Orphan, total int) error {
	count := map[uint32]int{}
	maybe := map[uint32]bool{}
	for _, v := range logged {
		count[v]++
	}
	for _, o := range orphans {
		switch o.Kind {
		case Undelivered:
			if count[o.Value] > 0 {
				return fmt.Errorf("value %d reported undelivered but the consumer logged it", o.Value)
			}
		case MaybeDelivered:
			maybe[o.Value] = true
			if count[o.Value] > 0 {
				continue // the allowed, flagged duplicate
			}
		default:
			return fmt.Errorf("consumer orphan %d has kind %v", o.Value, o.Kind)
		}
		count[o.Value]++
	}
	for _, v := range rest {
		count[v]++
	}
	var bad []string
	for v := uint32(1); v <= uint32(total); v++ {
		if count[v] != 1 {
			bad = append(bad, fmt.Sprintf("%d seen %d times", v, count[v]))
		}
	}
	if len(count) != total {
		keys := make([]int, 0, len(count))
		for v := range count {
			keys = append(keys, int(v))
		}
		sort.Ints(keys)
		bad = append(bad, fmt.Sprintf("values seen: %v", keys))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%v (logged %v, orphans %v, rest %v)", bad, logged, orphans, rest)
	}
	return nil
}
