package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
)

// expectQuiet fails if ch holds a signal. A store signals its own
// subscribers once a write commits, before the write returns; a test calls
// this after waiting for a subscriber that the same write did signal.
func expectQuiet(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Errorf("%s was signalled", what)
	default:
	}
}

// testSubscribeTopics checks that every write signals exactly the
// subscribers of its topic.
func testSubscribeTopics(t *testing.T, s store.Store) {
	ctx := t.Context()
	type sub struct {
		name   string
		topics store.Topic
		ch     <-chan struct{}
	}
	var subs []sub
	for _, tc := range []struct {
		name   string
		topics store.Topic
	}{
		{"objects", store.TopicObjects},
		{"blobs", store.TopicBlobs},
		{"presence", store.TopicPresence},
		{"objects and blobs", store.TopicObjects | store.TopicBlobs},
		{"all", store.TopicAll},
	} {
		ch, cancel := s.Subscribe(tc.topics)
		t.Cleanup(cancel)
		subs = append(subs, sub{tc.name, tc.topics, ch})
	}

	for _, tc := range []struct {
		name  string
		topic store.Topic // 0: a write no topic covers
		write func() error
	}{
		{"put object", store.TopicObjects, func() error {
			_, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{}`)}, store.AnyRevision)
			return err
		}},
		{"delete object", store.TopicObjects, func() error {
			_, err := s.DeleteObject(ctx, "Service", "prod", "web", "admin:bob", store.AnyRevision)
			return err
		}},
		{"audited put object", store.TopicObjects, func() error {
			_, _, err := s.PutObjectAudited(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{}`)}, store.AnyRevision,
				[]store.AuditRecord{auditedRec("object.created", "Service/prod/web")})
			return err
		}},
		{"audited delete object", store.TopicObjects, func() error {
			_, _, err := s.DeleteObjectAudited(ctx, "Service", "prod", "web", "admin:bob", store.AnyRevision,
				[]store.AuditRecord{auditedRec("object.delete", "Service/prod/web")})
			return err
		}},
		{"revocation", store.TopicObjects, func() error {
			return s.AddRevocation(ctx, store.Revocation{Serial: "42", RevokedAt: base, Reason: "test"})
		}},
		{"put blob", store.TopicBlobs, func() error {
			_, err := s.PutBlob(ctx, "ca/keys", []byte("k"), store.AnyRevision)
			return err
		}},
		{"delete blob", store.TopicBlobs, func() error {
			return s.DeleteBlob(ctx, "ca/keys", store.AnyRevision)
		}},
		{"put presence", store.TopicPresence, func() error {
			return s.PutPresence(ctx, store.Presence{Replica: "r1", Data: []byte("p"), ExpiresAt: base.Add(time.Minute)})
		}},
		{"delete presence", store.TopicPresence, func() error {
			return s.DeletePresence(ctx, "r1")
		}},
		{"audit append", 0, func() error {
			_, err := s.AppendAudit(ctx, store.AuditRecord{Time: base, Action: "test", Outcome: "success"})
			return err
		}},
		{"node", 0, func() error {
			return s.PutNode(ctx, store.Node{Name: "node-1", SPIFFEID: "spiffe://example.org/node/1"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.write(); err != nil {
				t.Fatalf("write: %v", err)
			}
			for _, sb := range subs {
				if sb.topics&tc.topic != 0 {
					waitNotified(t, sb.ch, fmt.Sprintf("after %s, subscriber of %s", tc.name, sb.name))
				}
			}
			// The write's own signals have been delivered: any other is
			// a wrong one.
			for _, sb := range subs {
				expectQuiet(t, sb.ch, fmt.Sprintf("after %s, subscriber of %s", tc.name, sb.name))
			}
		})
	}
}
