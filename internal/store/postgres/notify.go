package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trustmesh/trustmesh/internal/store"
)

// Subscribe returns a channel that receives a value after every committed
// change to one of topics, made through this store or through another
// server on the same database: object writes and deletes and revocations
// (store.TopicObjects), blob writes and deletes (store.TopicBlobs), presence
// puts and deletes (store.TopicPresence). Signals coalesce: a watcher that
// has not yet received the last one gets one value for many writes, and
// should then re-read what it follows. After the store's listener lost its
// connection and reconnected, every subscriber is signalled, since
// notifications may have been missed meanwhile. The channel is never
// closed; cancel stops the signals and may be called more than once.
func (s *Store) Subscribe(topics store.Topic) (<-chan struct{}, func()) {
	return s.subs.Subscribe(topics)
}

// parsePayload reads a notification's payload, "<origin> <topic>".
func parsePayload(payload string) (origin string, topic store.Topic, err error) {
	origin, bits, ok := strings.Cut(payload, " ")
	if !ok {
		return "", 0, fmt.Errorf("notification payload %q: want \"<origin> <topic>\"", payload)
	}
	n, err := strconv.ParseUint(bits, 10, 8)
	if err != nil {
		return "", 0, fmt.Errorf("notification payload %q: %w", payload, err)
	}
	return origin, store.Topic(n), nil
}

// connectListener opens the listener connection and LISTENs.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	conn, err := s.connect(ctx, "listener")
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return conn, nil
}

// listen receives notifications on conn until the store is closed, and
// reconnects with backoff whenever the connection fails. After every
// reconnect it signals every subscriber, since notifications sent while it
// was away are lost.
func (s *Store) listen(conn *pgx.Conn) {
	defer s.wg.Done()
	ctx := s.closed
	backoff := minBackoff
	for {
		if conn == nil {
			c, err := s.connectListener(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("listener: cannot reconnect", logError, err, logBackoff, backoff)
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			conn, backoff = c, minBackoff
			s.log.Info("listener: reconnected")
			s.subs.Notify(store.TopicAll)
		}
		err := s.receive(ctx, conn)
		closeConn(conn)
		conn = nil
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("listener: connection lost", logError, err)
	}
}

// receive fans out notifications from conn until it fails or ctx ends. An
// idle connection is pinged now and then, so a silently dead one is noticed.
func (s *Store) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wait, cancel := context.WithTimeout(ctx, s.listenIdle)
		n, err := conn.WaitForNotification(wait)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			ping, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Ping(ping)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		case err != nil:
			return err
		}
		origin, topic, err := parsePayload(n.Payload)
		if err != nil {
			s.log.Warn("listener: ignoring a notification", logError, err)
			continue
		}
		if origin == s.origin {
			continue // signalled on commit already
		}
		s.subs.Notify(topic)
	}
}

// sleep waits for d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
