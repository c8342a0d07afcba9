package store

import (
	"errors"
	"fmt"
)

// The checks below are the parts of the Store contract that do not depend
// on how a store keeps its data. Every implementation runs them, so that
// all of them accept the same inputs and fail with the same words.

// ValidateTokenHash checks that hash has JoinToken.Hash's form, lowercase
// hex SHA-256, which also keeps a raw token secret from being stored by
// mistake.
func ValidateTokenHash(hash string) error {
	if len(hash) != 64 {
		return fmt.Errorf("token hash has %d characters, want 64 (lowercase hex SHA-256)", len(hash))
	}
	for _, c := range hash {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return errors.New("token hash is not lowercase hex")
		}
	}
	return nil
}

// ValidateObjectWrite checks the arguments of PutObject and DeleteObject: a
// kind and a name (the namespace may be empty), and an expectRevision that
// is AnyRevision, MustNotExist or a revision.
func ValidateObjectWrite(kind, name string, expectRevision int64) error {
	if kind == "" {
		return errors.New("object kind is empty")
	}
	if name == "" {
		return errors.New("object name is empty")
	}
	if expectRevision < AnyRevision {
		return fmt.Errorf("invalid expected revision %d", expectRevision)
	}
	return nil
}

// CheckPutRevision decides PutObject's precondition: expectRevision against
// live, the object's live revision (0 if it is not live). The error wraps
// ErrConflict.
func CheckPutRevision(expectRevision, live int64) error {
	switch {
	case expectRevision == AnyRevision:
	case expectRevision == MustNotExist && live != 0:
		return fmt.Errorf("exists at revision %d: %w", live, ErrConflict)
	case expectRevision > 0 && live == 0:
		return fmt.Errorf("expected revision %d, object is not live: %w", expectRevision, ErrConflict)
	case expectRevision > 0 && live != expectRevision:
		return fmt.Errorf("expected revision %d, live revision is %d: %w", expectRevision, live, ErrConflict)
	}
	return nil
}

// CheckDeleteRevision decides DeleteObject's precondition: ErrNotFound if
// the object is not live (live is 0), an error that wraps ErrConflict if
// expectRevision is neither AnyRevision nor live.
func CheckDeleteRevision(expectRevision, live int64) error {
	if live == 0 {
		return ErrNotFound
	}
	if expectRevision != AnyRevision && expectRevision != live {
		return fmt.Errorf("expected revision %d, live revision is %d: %w", expectRevision, live, ErrConflict)
	}
	return nil
}

// ValidateExpectVersion checks the expectVersion of PutBlob and DeleteBlob:
// AnyRevision, MustNotExist or a version.
func ValidateExpectVersion(expectVersion int64) error {
	if expectVersion < AnyRevision {
		return fmt.Errorf("invalid expected version %d", expectVersion)
	}
	return nil
}
