package report

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/stratalog/strata/bench/harness/hist"
)

// Plots writes the plots into dir and returns their paths.
func (r *Report) Plots(dir string) ([]string, error) {
	var out []string
	for _, f := range []func(string) (string, error){r.throughputPlot, r.latencyPlot("e2e-open", "latency-e2e.png", "End-to-end latency, open loop (send → receive)"),
		r.latencyPlot("produce", "latency-produce.png", "Producer-side latency at saturation (send → ack)"), r.partitionsPlot,
		r.queuePlot, r.latencyPlot("queue", "latency-queue.png", "Queue: receive → ack latency while draining a backlog")} {
		p, err := f(dir)
		if err != nil {
			return out, err
		}
		if p != "" {
			out = append(out, p)
		}
	}
	curve, err := r.curvePlot(dir)
	return append(out, curve...), err
}

func (r *Report) targetNames() []string {
	var names []string
	seen := map[string]bool{}
	for _, x := range r.Results {
		if isQueue(x.Workload) || isCurve(x.Workload) {
			continue
		}
		if !seen[x.Target] {
			seen[x.Target] = true
			names = append(names, x.Target)
		}
	}
	return names
}

func (r *Report) throughputPlot(dir string) (string, error) {
	names := r.targetNames()
	if len(names) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Throughput, %d B records (MB/s of payload)", r.Params.RecordSize)
	p.Y.Label.Text = "MB/s"
	wls := []string{"produce", "e2e-saturation", "replay"}
	w := vg.Points(float64(60) / float64(len(wls)))
	for i, wl := range wls {
		vals := make(plotter.Values, len(names))
		for j, n := range names {
			if x := r.Find(n, wl); x != nil {
				vals[j] = x.MBPerS
			}
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return "", err
		}
		b.LineStyle.Width = vg.Length(0)
		b.Color = plotutil.Color(i)
		b.Offset = w * vg.Length(float64(i)-float64(len(wls)-1)/2)
		p.Add(b)
		p.Legend.Add(wl, b)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	// Limits as horizontal reference lines.
	for i, l := range []string{"disk write+fsync", "object GET"} {
		if lim := r.Limit(l); lim != nil {
			line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: lim.MBPerS}, {X: float64(len(names)) - 0.5, Y: lim.MBPerS}})
			if err != nil {
				return "", err
			}
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			line.Color = color.Gray{Y: uint8(60 + 60*i)}
			p.Add(line)
			p.Legend.Add(fmt.Sprintf("limit: %s (%.0f)", lim.Name, lim.MBPerS), line)
		}
	}
	path := filepath.Join(dir, "throughput.png")
	return path, p.Save(vg.Length(140+110*len(names))*vg.Millimeter/4, 110*vg.Millimeter, path)
}

// nines maps a quantile to "number of nines": 0.9 -> 1, 0.99 -> 2.
func nines(q float64) float64 {
	if q >= 1 {
		return 5
	}
	return -math.Log10(1 - q)
}

type ninesTicks struct{}

func (ninesTicks) Ticks(min, max float64) []plot.Tick {
	var t []plot.Tick
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 0.9999} {
		t = append(t, plot.Tick{Value: nines(q), Label: strings.TrimSuffix(fmt.Sprintf("p%g", q*100), ".0")})
	}
	return append(t, plot.Tick{Value: 5, Label: "max"})
}

func (r *Report) latencyPlot(wl, file, title string) func(string) (string, error) {
	return func(dir string) (string, error) {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "percentile"
		p.Y.Label.Text = "ms (log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Tick.Marker = ninesTicks{}
		n := 0
		for _, x := range r.Results {
			if x.Workload != wl || x.Latency == nil || len(x.Latency.Curve) != len(hist.CurveQuantiles) {
				continue
			}
			pts := make(plotter.XYs, len(hist.CurveQuantiles))
			for i, q := range hist.CurveQuantiles {
				pts[i] = plotter.XY{X: nines(q), Y: math.Max(x.Latency.Curve[i], 0.001)}
			}
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return "", err
			}
			l.Color, s.Color = plotutil.Color(n), plotutil.Color(n)
			l.Width = vg.Points(1.5)
			s.Shape = plotutil.Shape(n)
			p.Add(l, s)
			label := x.Target
			if x.Offered > 0 {
				label = fmt.Sprintf("%s @ %s/s", x.Target, human(x.Offered))
			}
			p.Legend.Add(label, l, s)
			n++
		}
		if n == 0 {
			return "", nil
		}
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(plotter.NewGrid())
		path := filepath.Join(dir, file)
		return path, p.Save(180*vg.Millimeter, 110*vg.Millimeter, path)
	}
}

func (r *Report) partitionsPlot(dir string) (string, error) {
	byTarget := map[string]plotter.XYs{}
	var order []string
	for _, x := range r.Results {
		var n int
		if _, err := fmt.Sscanf(x.Workload, "partitions-%d", &n); err != nil {
			continue
		}
		if _, ok := byTarget[x.Target]; !ok {
			order = append(order, x.Target)
		}
		byTarget[x.Target] = append(byTarget[x.Target], plotter.XY{X: float64(n), Y: x.MBPerS})
	}
	if len(order) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = "Produce throughput vs partitions"
	p.X.Label.Text = "partitions (log scale)"
	p.Y.Label.Text = "MB/s"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	for i, t := range order {
		l, s, err := plotter.NewLinePoints(byTarget[t])
		if err != nil {
			return "", err
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		p.Add(l, s)
		p.Legend.Add(t, l, s)
	}
	p.Add(plotter.NewGrid())
	path := filepath.Join(dir, "partitions.png")
	return path, p.Save(160*vg.Millimeter, 100*vg.Millimeter, path)
}

// queuePlot: the queue kinds' drain throughput (records received and
// acked per second), bars.
func (r *Report) queuePlot(dir string) (string, error) {
	var names []string
	var vals plotter.Values
	for _, k := range r.Queues {
		if x := r.Find(k.Name, "queue"); x != nil {
			names = append(names, k.Name)
			vals = append(vals, x.RecPerS)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Queue: %d-record backlog, %d workers, batches of %d (%d B records)", r.Params.QueueRecords, r.Params.QueueWorkers, r.Params.QueueBatch, r.Params.RecordSize)
	p.Y.Label.Text = "records received and acked per second"
	b, err := plotter.NewBarChart(vals, vg.Points(30))
	if err != nil {
		return "", err
	}
	b.LineStyle.Width = vg.Length(0)
	b.Color = plotutil.Color(0)
	p.Add(b)
	p.NominalX(names...)
	path := filepath.Join(dir, "queue.png")
	return path, p.Save(vg.Length(140+110*len(names))*vg.Millimeter/4, 110*vg.Millimeter, path)
}
