package actions

import "context"

// bus is an executor's connection to systemd: dialled at the first call,
// and dropped after a failed one so the next call dials again (the bus may
// have restarted). Callers serialise access.
type bus[C interface{ Close() }] struct {
	dial func(context.Context) (C, error)
	conn C
	up   bool
}

func newBus[C interface{ Close() }](dial func(context.Context) (C, error)) bus[C] {
	return bus[C]{dial: dial}
}

// get returns the connection, dialling it when there is none.
func (b *bus[C]) get(ctx context.Context) (C, error) {
	if b.up {
		return b.conn, nil
	}
	c, err := b.dial(ctx)
	if err != nil {
		var none C
		return none, err
	}
	b.conn, b.up = c, true
	return c, nil
}

// drop closes a connection that failed.
func (b *bus[C]) drop() {
	if b.up {
		b.conn.Close()
		var none C
		b.conn, b.up = none, false
	}
}
