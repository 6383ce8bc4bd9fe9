package admission

import (
	"fmt"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// BenchmarkBookReserve is one admission's work on the book: a reservation
// and the read of what is held, with held reservations expiring as time
// goes on. held is how many stay in the book at the steady state.
func BenchmarkBookReserve(b *testing.B) {
	for _, held := range []int{10, 1000} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			const step = time.Millisecond
			book := NewBook(time.Duration(held) * step)
			now := time.Unix(0, 0)
			for b.Loop() {
				now = now.Add(step)
				book.ReserveFor(now, 1000, license.Profile("user"), 1)
				if book.ReservedOf(now, license.Profile("user")) > held+1 {
					b.Fatal("expired reservations are still held")
				}
			}
		})
	}
}
