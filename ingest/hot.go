package ingest

import (
	"github.com/stratalog/strata/segment"
)

// Hot is the partition's local log as readers see it: only records below
// the high watermark.
func (p *Partition) Hot() *HotView { return &HotView{p: p} }

// HotView is the read side of a partition's local log, cut at the high
// watermark (it satisfies fetch.HotLog).
type HotView struct{ p *Partition }

// StartOffset is the oldest offset on local disk.
func (h *HotView) StartOffset() int64 { return h.p.local.StartOffset() }

// NextOffset is the high watermark.
func (h *HotView) NextOffset() int64 { return h.p.HighWatermark() }

// Read is LocalLog.Read without the records at or past the high watermark.
func (h *HotView) Read(from int64, maxBytes int) ([]segment.Batch, error) {
	hw := h.p.HighWatermark()
	if from >= hw {
		return nil, nil
	}
	bs, err := h.p.local.Read(from, maxBytes)
	if err != nil {
		return nil, err
	}
	for i := range bs {
		if bs[i].BaseOffset >= hw {
			return bs[:i], nil
		}
		if bs[i].LastOffset() >= hw {
			bs[i].Records = bs[i].Records[:hw-bs[i].BaseOffset]
			return bs[:i+1], nil
		}
	}
	return bs, nil
}
