package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// aclFileVersion is the format version of meta.ACLKey this code writes;
// a newer one is refused, never rewritten.
const aclFileVersion = 1

// aclFile is what meta.ACLKey holds.
type aclFile struct {
	Version  int    `json:"version"`
	UpdateID string `json:"update_id"` // unique per write (meta.CAS)
	ACLs     []ACL  `json:"acls"`
}

// decodeACLs decodes and validates meta.ACLKey's bytes.
func decodeACLs(data []byte) ([]ACL, error) {
	var f aclFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("auth: %s does not parse (%v): restore it from a backup, or delete it and add the ACLs again", meta.ACLKey, err)
	}
	if f.Version > aclFileVersion {
		return nil, fmt.Errorf("auth: %s is format version %d, newer than this broker's %d: upgrade the broker", meta.ACLKey, f.Version, aclFileVersion)
	}
	for i := range f.ACLs {
		if err := f.ACLs[i].Normalize(); err != nil {
			return nil, fmt.Errorf("auth: %s: ACL %d: %w", meta.ACLKey, i, err)
		}
	}
	return f.ACLs, nil
}

// ACLStoreConfig configures an ACLStore.
type ACLStoreConfig struct {
	// RefreshInterval is how often the store checks the bucket for
	// another broker's change (a Stat; the object is read only when its
	// ETag changed). Default 2s.
	RefreshInterval time.Duration
	// Logger logs refresh failures. Default slog.Default().
	Logger *slog.Logger
}

// ACLStore keeps the cluster's ACLs in the bucket (meta.ACLKey), changed
// only by compare-and-swap, and a cached copy that Guard consults on every
// RPC.
type ACLStore struct {
	cas meta.CAS
	cfg ACLStoreConfig

	mu   sync.RWMutex // guards acls, etag
	acls []ACL        // never modified in place: replaced whole
	etag string       // of the version acls came from; "" when absent

	ctx     context.Context // ends at Close: the refresh goroutine stops
	cancel  context.CancelFunc
	done    chan struct{} // closed when the refresh goroutine ends
	started bool          // guarded by mu
}

// NewACLStore returns a store of the ACLs in store. It does no I/O: call
// Load, then Start.
func NewACLStore(store tier.Store, cfg ACLStoreConfig) *ACLStore {
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &ACLStore{cas: meta.CAS{Store: store, Limit: 8 << 20}, cfg: cfg, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// Load reads the ACLs from the bucket. A broker that enforces ACLs calls
// it at start and refuses to start on its error: it would otherwise run
// without the ACLs it was given.
func (s *ACLStore) Load(ctx context.Context) error {
	v, err := s.cas.Read(ctx, meta.ACLKey)
	if err != nil {
		return fmt.Errorf("auth: reading the ACLs: %w", err)
	}
	return s.adopt(v)
}

func (s *ACLStore) adopt(v meta.Version) error {
	var acls []ACL
	if v.Exists() {
		var err error
		if acls, err = decodeACLs(v.Data); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.acls, s.etag = acls, v.ETag
	s.mu.Unlock()
	return nil
}

// Refresh re-reads the ACLs if the object changed since the store last
// read it. On an error the store keeps the ACLs it has.
func (s *ACLStore) Refresh(ctx context.Context) error {
	info, err := s.cas.Store.Stat(ctx, meta.ACLKey)
	s.mu.RLock()
	cur := s.etag
	s.mu.RUnlock()
	switch {
	case errors.Is(err, tier.ErrNotFound):
		if cur == "" {
			return nil
		}
		return s.adopt(meta.Version{}) // deleted: no ACLs (default deny)
	case err != nil:
		return fmt.Errorf("auth: checking the ACLs: %w", err)
	case info.ETag == cur:
		return nil
	}
	return s.Load(ctx)
}

// Start refreshes the ACLs every RefreshInterval until Close.
func (s *ACLStore) Start() {
	s.mu.Lock()
	if s.started || s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.started = true
	s.mu.Unlock()
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.cfg.RefreshInterval)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			if err := s.Refresh(ctx); err != nil && s.ctx.Err() == nil {
				s.cfg.Logger.Warn("ACL refresh failed; enforcing the ACLs read last", "err", err)
			}
			cancel()
		}
	}()
}

// Close stops the refresh goroutine and waits for it. It is idempotent.
func (s *ACLStore) Close() {
	s.mu.Lock()
	s.cancel()
	started := s.started
	s.mu.Unlock()
	if started {
		<-s.done
	}
}

// ACLs returns the cached ACLs. The caller must not modify them.
func (s *ACLStore) ACLs() []ACL {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.acls
}

// List reads the ACLs from the bucket (refreshing the cache) and returns
// those of principal ("": every principal's).
func (s *ACLStore) List(ctx context.Context, principal string) ([]ACL, error) {
	if err := s.Load(ctx); err != nil {
		return nil, err
	}
	var out []ACL
	for _, a := range s.ACLs() {
		if principal == "" || a.Principal == principal {
			out = append(out, a)
		}
	}
	return out, nil
}

// Add grants a's operations (merged into an ACL of the same principal
// and resource pattern, if there is one). changed is false when every
// operation was granted already.
func (s *ACLStore) Add(ctx context.Context, a ACL) (changed bool, err error) {
	if err := a.Normalize(); err != nil {
		return false, err
	}
	return s.update(ctx, func(acls []ACL) ([]ACL, bool) {
		for i := range acls {
			if acls[i].key() != a.key() {
				continue
			}
			merged := acls[i]
			merged.Operations = slices.Clone(merged.Operations)
			grew := false
			for _, op := range a.Operations {
				if !slices.Contains(merged.Operations, op) {
					merged.Operations, grew = append(merged.Operations, op), true
				}
			}
			if !grew {
				return acls, false
			}
			_ = merged.Normalize() // sorts; valid already
			acls[i] = merged
			return acls, true
		}
		return append(acls, a), true
	})
}

// Remove takes a's operations away from the ACL of the same principal and
// resource pattern; an ACL left with none is deleted. changed is false
// when none of them was granted.
func (s *ACLStore) Remove(ctx context.Context, a ACL) (changed bool, err error) {
	if err := a.Normalize(); err != nil {
		return false, err
	}
	return s.update(ctx, func(acls []ACL) ([]ACL, bool) {
		for i := range acls {
			if acls[i].key() != a.key() {
				continue
			}
			left := slices.DeleteFunc(slices.Clone(acls[i].Operations), func(op Operation) bool { return slices.Contains(a.Operations, op) })
			if len(left) == len(acls[i].Operations) {
				return acls, false
			}
			if len(left) == 0 {
				return slices.Delete(acls, i, i+1), true
			}
			acls[i].Operations = left
			return acls, true
		}
		return acls, false
	})
}

// update runs a read-modify-CAS of the ACLs; modify gets a copy it may
// change.
func (s *ACLStore) update(ctx context.Context, modify func([]ACL) ([]ACL, bool)) (bool, error) {
	changed := false
	v, err := s.cas.Update(ctx, meta.ACLKey, func(cur meta.Version) ([]byte, error) {
		var acls []ACL
		if cur.Exists() {
			var err error
			if acls, err = decodeACLs(cur.Data); err != nil {
				return nil, err
			}
		}
		var next []ACL
		next, changed = modify(slices.Clone(acls))
		if !changed {
			return nil, errUnchanged
		}
		return json.MarshalIndent(aclFile{Version: aclFileVersion, UpdateID: meta.NewWriteID(), ACLs: next}, "", "  ")
	})
	if errors.Is(err, errUnchanged) {
		return false, s.Load(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("auth: changing the ACLs: %w", err)
	}
	return true, s.adopt(v)
}

var errUnchanged = errors.New("auth: unchanged")
