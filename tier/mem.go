package tier

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemStore is an in-memory Store with the same semantics as the others,
// for fast tests. ETags are "m" followed by a store-wide counter, so every
// published version has a new one. Safe for concurrent use; Close is a
// no-op and the store stays usable.
type MemStore struct {
	mu struct {
		sync.Mutex
		objects map[string]memObject // the current version of each key
		version int64                // the last ETag number handed out
	}
}

// memObject is one published version; it is never modified, only replaced.
type memObject struct {
	data []byte
	info ObjectInfo
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore {
	m := &MemStore{}
	m.mu.objects = map[string]memObject{}
	return m
}

// Close implements Store.
func (m *MemStore) Close() error { return nil }

func (m *MemStore) lookup(ctx context.Context, op, key string) (memObject, error) {
	if err := ctx.Err(); err != nil {
		return memObject{}, err
	}
	if err := ValidateKey(key); err != nil {
		return memObject{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.mu.objects[key]
	if !ok {
		return memObject{}, fmt.Errorf("tier: %s %s: %w", op, key, ErrNotFound)
	}
	return o, nil
}

// Get implements BucketReader.
func (m *MemStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	o, err := m.lookup(ctx, "get", key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return io.NopCloser(bytes.NewReader(o.data)), o.info, nil
}

// GetRange implements BucketReader.
func (m *MemStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := checkRange(key, off, length); err != nil {
		return nil, err
	}
	o, err := m.lookup(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	size := int64(len(o.data))
	if off > size {
		return nil, rangeErr(key, off, length, size)
	}
	return io.NopCloser(bytes.NewReader(o.data[off : off+min(length, size-off)])), nil
}

// Stat implements BucketReader.
func (m *MemStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	o, err := m.lookup(ctx, "stat", key)
	return o.info, err
}

// List implements BucketReader. It walks a snapshot taken at the call.
func (m *MemStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	var infos []ObjectInfo
	for k, o := range m.mu.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, o.info)
		}
	}
	m.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// put reads the body, then publishes it if check (under the lock) allows.
func (m *MemStore) put(ctx context.Context, op, key string, r io.Reader, size int64, check func(cur memObject, exists bool) error) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	var buf bytes.Buffer
	if _, err := copyBody(ctx, op, key, &buf, r, size); err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.mu.objects[key]
	if check != nil {
		if err := check(cur, ok); err != nil {
			return ObjectInfo{}, fmt.Errorf("tier: %s %s: %w", op, key, err)
		}
	}
	m.mu.version++
	data := buf.Bytes()
	info := ObjectInfo{Key: key, Size: int64(len(data)), ETag: fmt.Sprintf("m%d", m.mu.version), LastModified: time.Now()}
	m.mu.objects[key] = memObject{data: data, info: info}
	return info, nil
}

// Put implements Store.
func (m *MemStore) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return m.put(ctx, "put", key, r, size, nil)
}

// PutIfAbsent implements Store.
func (m *MemStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return m.put(ctx, "put-if-absent", key, r, size, func(_ memObject, exists bool) error {
		if exists {
			return ErrPreconditionFailed
		}
		return nil
	})
}

// PutIfMatch implements Store.
func (m *MemStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	return m.put(ctx, "put-if-match", key, r, size, func(cur memObject, exists bool) error {
		if !exists || etag == "" || cur.info.ETag != etag {
			return ErrPreconditionFailed
		}
		return nil
	})
}

// Delete implements Store.
func (m *MemStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.mu.objects, key)
	m.mu.Unlock()
	return nil
}
