package report

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/stratalog/strata/bench/harness/hist"
	"github.com/stratalog/strata/bench/harness/workload"
)

// The price the PUT-cost table uses: Amazon S3 Standard's list price of
// PUT, COPY, POST and LIST requests in US East (N. Virginia), per 1,000
// requests, as of S3PutPriceDate; a month is HoursPerMonth hours (the
// AWS pricing calculator's month).
const (
	S3PutUSDPer1000 = 0.005
	S3PutPriceDate  = "2026-12-02"
	HoursPerMonth   = 730
)

// PutUSDPerMonth is what putsPerS PUTs per second, sustained, cost per
// month at S3PutUSDPer1000.
func PutUSDPerMonth(putsPerS float64) float64 {
	return putsPerS * 3600 * HoursPerMonth / 1000 * S3PutUSDPer1000
}

func isCurve(wl string) bool { return strings.HasPrefix(wl, "curve-") }

// CurveTargets are the targets with latency-curve points, in the order
// of their first point.
func (r *Report) CurveTargets() []string {
	var out []string
	for _, x := range r.Results {
		if isCurve(x.Workload) && !slices.Contains(out, x.Target) {
			out = append(out, x.Target)
		}
	}
	return out
}

// CurvePoints are target's curve points by increasing load.
func (r *Report) CurvePoints(target string) []*workload.Result {
	var out []*workload.Result
	for _, x := range r.Results {
		if x.Target == target && isCurve(x.Workload) {
			out = append(out, x)
		}
	}
	slices.SortStableFunc(out, func(a, b *workload.Result) int {
		switch {
		case a.Load < b.Load:
			return -1
		case a.Load > b.Load:
			return 1
		}
		return 0
	})
	return out
}

// curvePoint returns target's point at load (within 0.1 %), or nil.
func (r *Report) curvePoint(target string, load float64) *workload.Result {
	for _, x := range r.CurvePoints(target) {
		if math.Abs(x.Load-load) < 0.001 {
			return x
		}
	}
	return nil
}

func ms3(s *hist.Summary) (string, string, string) {
	if s == nil || s.Count == 0 {
		return "", "", ""
	}
	f := func(v float64) string {
		if v >= 100 {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.2g", v)
	}
	if s.P50 >= 1 && s.P50 < 10 {
		return fmt.Sprintf("%.1f", s.P50), f(s.P99), f(s.P999)
	}
	return f(s.P50), f(s.P99), f(s.P999)
}

// curveTable writes the latency-versus-load points and, for targets
// whose WAL PUTs were counted (strata on MinIO), the PUT cost at light,
// medium and heavy load.
func (r *Report) curveTable(w io.Writer) {
	targets := r.CurveTargets()
	if len(targets) == 0 {
		return
	}
	fmt.Fprintf(w, "\nlatency versus offered load (open loop, %v per point; load = offered rate / the target's own e2e-saturation rate; latencies from each record's due time):\n\n", r.Params.CurveDuration)
	fmt.Fprintln(w, "| target | load | offered/s | acked/s | e2e p50 ms | e2e p99 ms | e2e p99.9 ms | ack p50 ms | ack p99 ms | ack p99.9 ms | WAL PUTs/s | KiB per WAL PUT | all PUTs/s | notes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, t := range targets {
		for _, x := range r.CurvePoints(t) {
			e50, e99, e999 := ms3(x.Latency)
			a50, a99, a999 := ms3(x.Latency2)
			var wal, kib, all string
			if x.Cost.Puts > 0 || x.Cost.WALPuts > 0 {
				wal = fmt.Sprintf("%.1f", x.Cost.WALPutsPerS)
				all = fmt.Sprintf("%.1f", float64(x.Cost.Puts)/x.Seconds)
				if x.Cost.WALPuts > 0 {
					kib = fmt.Sprintf("%.0f", float64(x.Cost.WALPutBytes)/float64(x.Cost.WALPuts)/1024)
				}
			}
			var notes []string
			if x.Errors > 0 {
				notes = append(notes, fmt.Sprintf("%d errors", x.Errors))
			}
			if x.Missing > 0 {
				notes = append(notes, fmt.Sprintf("%d never received", x.Missing))
			}
			if x.Note != "" {
				notes = append(notes, x.Note)
			}
			fmt.Fprintf(w, "| %s | %.0f %% | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t, x.Load*100, human(x.Offered), human(x.RecPerS),
				e50, e99, e999, a50, a99, a999, wal, kib, all, strings.Join(notes, "; "))
		}
	}
	var costed []string
	for _, t := range targets {
		if slices.ContainsFunc(r.CurvePoints(t), func(x *workload.Result) bool { return x.Cost.WALPuts > 0 }) {
			costed = append(costed, t)
		}
	}
	if len(costed) == 0 {
		return
	}
	fmt.Fprintf(w, "\nWAL PUTs per second per broker and what they cost per month at S3 Standard's list price ($%g per 1,000 PUTs, US East, %s; %d-hour month), sustained:\n\n",
		S3PutUSDPer1000, S3PutPriceDate, HoursPerMonth)
	fmt.Fprintln(w, "| target | light (10 %): PUTs/s | $/month | medium (50 %): PUTs/s | $/month | heavy (90 %): PUTs/s | $/month |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, t := range costed {
		cells := []string{t}
		for _, load := range []float64{0.1, 0.5, 0.9} {
			if x := r.curvePoint(t, load); x != nil {
				cells = append(cells, fmt.Sprintf("%.1f", x.Cost.WALPutsPerS), fmt.Sprintf("%.0f", PutUSDPerMonth(x.Cost.WALPutsPerS)))
			} else {
				cells = append(cells, "", "")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}

// The curve plot's panels: which percentile of a Summary each shows.
var curvePanels = []struct {
	title string
	pick  func(*hist.Summary) float64
}{
	{"p50", func(s *hist.Summary) float64 { return s.P50 }},
	{"p99", func(s *hist.Summary) float64 { return s.P99 }},
	{"p99.9", func(s *hist.Summary) float64 { return s.P999 }},
}

// curveXYs is one target's line in a panel: (load in %, latency in ms)
// for each point with observations, latencies floored at 0.01 ms for the
// log scale.
func curveXYs(points []*workload.Result, lat func(*workload.Result) *hist.Summary, pick func(*hist.Summary) float64) plotter.XYs {
	var xys plotter.XYs
	for _, x := range points {
		if s := lat(x); s != nil && s.Count > 0 {
			xys = append(xys, plotter.XY{X: x.Load * 100, Y: math.Max(pick(s), 0.01)})
		}
	}
	return xys
}

// logTicks label a log axis at 1, 2 and 5 times the powers of ten in
// [min, max], with unlabelled ticks at the other integers times them.
type logTicks struct{}

func (logTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	if !(min > 0) || !(max >= min) || math.IsInf(max, 0) {
		return nil
	}
	for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
		base := math.Pow(10, e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * base
			if v < min*0.999 || v > max*1.001 {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconvG(v)
			}
			out = append(out, t)
		}
	}
	return out
}

func strconvG(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

// curvePlots builds the latency curve's tiles: one panel per percentile
// (p50, p99, p99.9), x the offered load in % of each target's own
// saturation (ticks at the loads measured), y the latency in ms on a log
// scale shared by the panels; a solid line per target for end-to-end
// latency, and for strata targets a dashed line of the same colour for
// the produce-ack latency; then a tile with the legend. Nil when there
// is no curve.
func (r *Report) curvePlots() []*plot.Plot {
	targets := r.CurveTargets()
	if len(targets) == 0 {
		return nil
	}
	e2e := func(x *workload.Result) *hist.Summary { return x.Latency }
	ack := func(x *workload.Result) *hist.Summary { return x.Latency2 }
	var loads []float64
	for _, t := range targets {
		for _, x := range r.CurvePoints(t) {
			if !slices.Contains(loads, x.Load*100) {
				loads = append(loads, x.Load*100)
			}
		}
	}
	slices.Sort(loads)
	var xticks []plot.Tick
	for _, l := range loads {
		xticks = append(xticks, plot.Tick{Value: l, Label: strconvG(l)})
	}
	legend := plot.New()
	legend.HideAxes()
	legend.X.Min, legend.X.Max, legend.Y.Min, legend.Y.Max = 0, 1, 0, 1
	legend.Legend.Top, legend.Legend.Left = true, true
	legend.Legend.TextStyle.Font.Size = vg.Points(9)
	var out []*plot.Plot
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for i, panel := range curvePanels {
		p := plot.New()
		// The unit goes in the title: a Y label on one panel only would
		// give that panel a shorter data area than the others.
		p.Title.Text = panel.title + " latency, ms (log scale)"
		p.X.Label.Text = "offered load, % of own saturation"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
		p.X.Tick.Marker = plot.ConstantTicks(xticks)
		n := 0
		for ti, t := range targets {
			points := r.CurvePoints(t)
			for _, line := range []struct {
				lat    func(*workload.Result) *hist.Summary
				label  string
				dashed bool
			}{{e2e, t, false}, {ack, t + ": produce ack", true}} {
				if line.dashed && !strings.HasPrefix(t, "strata") {
					continue
				}
				xys := curveXYs(points, line.lat, panel.pick)
				if len(xys) == 0 {
					continue
				}
				l, s, err := plotter.NewLinePoints(xys)
				if err != nil {
					continue // NaN or Inf: nothing to draw
				}
				l.Color, s.Color = plotutil.Color(ti), plotutil.Color(ti)
				l.Width = vg.Points(1.5)
				s.Shape = plotutil.Shape(ti)
				if line.dashed {
					l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
					l.Width = vg.Points(1)
				}
				p.Add(l, s)
				if i == 0 {
					legend.Legend.Add(line.label, l, s)
				}
				n++
			}
		}
		if n == 0 {
			return nil
		}
		p.Add(plotter.NewGrid())
		ymin, ymax = math.Min(ymin, p.Y.Min), math.Max(ymax, p.Y.Max)
		out = append(out, p)
	}
	legend.Legend.Add("")
	legend.Legend.Add("solid: end-to-end (send → receive)")
	legend.Legend.Add("dashed: produce ack (strata)")
	legend.Legend.Add(fmt.Sprintf("open loop, %v per point", r.Params.CurveDuration))
	for _, p := range out {
		p.Y.Min, p.Y.Max = ymin, ymax
		p.X.Min, p.X.Max = math.Min(0, p.X.Min), math.Max(100, p.X.Max)
	}
	return append(out, legend)
}

// curvePlot writes the latency curve as latency-curve.svg (small, for
// docs) and latency-curve.png into dir; it returns their paths, none
// without curve points.
func (r *Report) curvePlot(dir string) ([]string, error) {
	plots := r.curvePlots()
	if plots == nil {
		return nil, nil
	}
	w, h := vg.Length(85*len(plots))*vg.Millimeter, 100*vg.Millimeter
	draw3 := func(c vg.CanvasWriterTo) vg.CanvasWriterTo {
		dc := draw.New(c)
		tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
		for i, p := range plots {
			p.Draw(tiles.At(dc, i, 0))
		}
		return c
	}
	var out []string
	for _, f := range []struct {
		name string
		c    vg.CanvasWriterTo
	}{{"latency-curve.svg", vgsvg.New(w, h)}, {"latency-curve.png", vgimg.PngCanvas{Canvas: vgimg.New(w, h)}}} {
		path := filepath.Join(dir, f.name)
		file, err := os.Create(path)
		if err != nil {
			return out, err
		}
		_, err = draw3(f.c).WriteTo(file)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", f.name, err)
		}
		out = append(out, path)
	}
	return out, nil
}
