package target

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratalog/strata/bench/harness/procs"
)

// MinIO is a throwaway MinIO on loopback, started with the repository's
// scripts/minio.sh (which installs the pinned build once).
type MinIO struct {
	Endpoint, AccessKey, SecretKey string
	repo, state                    string
}

// StartMinIO starts MinIO via scripts/minio.sh under repoRoot, state in a
// new directory under dir.
func StartMinIO(ctx context.Context, repoRoot, dir string) (*MinIO, error) {
	state, err := os.MkdirTemp(dir, "minio-")
	if err != nil {
		return nil, err
	}
	script := filepath.Join(repoRoot, "scripts", "minio.sh")
	out, err := procs.RunQuiet(ctx, 10*time.Minute, nil, "bash", script, "start", state)
	if err != nil {
		return nil, fmt.Errorf("%w: minio.sh start: %v: %s", ErrUnavailable, err, out)
	}
	m := &MinIO{repo: repoRoot, state: state}
	f, err := os.Open(filepath.Join(state, "env"))
	if err != nil {
		m.Stop()
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "STRATA_TEST_MINIO_ENDPOINT":
			m.Endpoint = v
		case "STRATA_TEST_MINIO_ACCESS_KEY":
			m.AccessKey = v
		case "STRATA_TEST_MINIO_SECRET_KEY":
			m.SecretKey = v
		}
	}
	if m.Endpoint == "" {
		m.Stop()
		return nil, fmt.Errorf("minio.sh wrote no endpoint")
	}
	return m, nil
}

// Stop stops MinIO (minio.sh stops the PID it recorded) and removes its data.
func (m *MinIO) Stop() error {
	if m == nil {
		return nil
	}
	_, err := procs.RunQuiet(context.Background(), time.Minute, nil, "bash", filepath.Join(m.repo, "scripts", "minio.sh"), "stop", m.state)
	os.RemoveAll(m.state)
	return err
}

// PID is the MinIO server's process id (0 if unknown).
func (m *MinIO) PID() int {
	b, err := os.ReadFile(filepath.Join(m.state, "pid"))
	if err != nil {
		return 0
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	return pid
}

// DataDir is where MinIO keeps objects.
func (m *MinIO) DataDir() string { return filepath.Join(m.state, "data") }
