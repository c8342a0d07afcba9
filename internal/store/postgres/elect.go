package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// errClosed: the store was closed during a campaign.
var errClosed = errors.New("store is closed")

// Elect campaigns for the singleton role name among every server on the
// database. The role is a session-level advisory lock (pg_try_advisory_lock
// on a hash of name) held by a connection of its own, outside the pool:
// Elect tries for it about once a second until it is granted or ctx ends,
// reconnecting as needed. Once granted, the connection is pinged every
// second; the held context is cancelled when a ping fails or the
// connection drops (PostgreSQL has released the lock, or soon will, and
// another server may take the role), on release, when ctx ends, or when
// the store is closed. release unlocks, closes the connection and waits for
// that; it may be called more than once.
func (s *Store) Elect(ctx context.Context, name string) (context.Context, func(), error) {
	noop := func() {}
	key := lockKey("elect\x00" + name)
	conn, err := s.campaign(ctx, key)
	if err != nil {
		return nil, noop, fmt.Errorf("elect %q: %w", name, err)
	}
	held, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(s.closed, cancel)
	done := make(chan struct{})
	if !s.goroutine(func() {
		defer close(done)
		s.hold(held, cancel, conn, key, name)
	}) {
		stopOnClose()
		cancel()
		closeConn(conn)
		return nil, noop, fmt.Errorf("elect %q: %w", name, errClosed)
	}
	var once sync.Once
	return held, func() {
		once.Do(func() {
			stopOnClose()
			cancel()
			<-done
		})
	}, nil
}

// campaign returns a connection that holds the advisory lock key, trying
// every campaignInterval until ctx ends or the store is closed.
func (s *Store) campaign(ctx context.Context, key int64) (*pgx.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Err() != nil {
		return nil, errClosed
	}
	run, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closed, cancel)
	defer stop()

	var conn *pgx.Conn
	for {
		if conn == nil {
			c, err := s.connect(run, "elect")
			if err == nil {
				conn = c
			} else if run.Err() == nil {
				s.log.Debug("elect: cannot connect", logError, err)
			}
		}
		if conn != nil {
			var got bool
			err := conn.QueryRow(run, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got)
			switch {
			case err == nil && got:
				return conn, nil
			case err != nil:
				if run.Err() == nil {
					s.log.Debug("elect: try lock", logError, err)
				}
				closeConn(conn)
				conn = nil
			}
		}
		if !sleep(run, campaignInterval) {
			if conn != nil {
				closeConn(conn)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, errClosed
		}
	}
}

// hold keeps the role until held ends, then gives it up; if a ping fails
// first, it cancels held: the role is lost.
func (s *Store) hold(held context.Context, cancel context.CancelFunc, conn *pgx.Conn, key int64, name string) {
	defer closeConn(conn)
	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	for {
		select {
		case <-held.Done():
			ctx, cancelUnlock := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancelUnlock()
			// Closing the connection would release the lock too; the
			// explicit unlock does not wait for the server to notice.
			_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key)
			return
		case <-tick.C:
			ctx, cancelPing := context.WithTimeout(context.Background(), pingTimeout)
			err := conn.Ping(ctx)
			cancelPing()
			if err != nil && held.Err() == nil {
				s.log.Warn("elect: role lost", logRole, name, logError, err)
				cancel()
				return
			}
		}
	}
}
