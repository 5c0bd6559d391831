// Package validate checks strata's Kubernetes manifests (deploy/k8s) with
// no cluster and no container engine: the build machine has neither.
//
// Two layers, both run by this module's tests (scripts/validate-deploy.sh):
//
//   - Decode: every YAML document decodes STRICTLY into its k8s.io/api type,
//     chosen by apiVersion and kind. An unknown, misspelled or duplicated
//     field, a value of the wrong type, or a kind the scheme does not know
//     fails, naming the file and document.
//   - Check: the objects agree with each other and with how a strata broker
//     is run: workload selectors match their pod labels; a StatefulSet's
//     serviceName names a headless Service that publishes not-ready pods;
//     every Service selects some pod and targets ports it has; volume
//     mounts name volumes or claim templates; secret references name keys
//     that exist; $(VAR) references in env are defined before use; a
//     broker's probes are gRPC probes on its gRPC port; its advertised
//     address goes through the headless Service; its seeds are pods that
//     exist, started in order; its grace period covers the drain.
//
// It is its own Go module so that strata's module does not depend on
// k8s.io. Nothing here is safe or unsafe concurrently: it holds no state.
package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// MinGracePeriodSeconds is the least time a broker pod must be given
// between SIGTERM and SIGKILL (after its preStop hook) to leave the gossip
// ring (up to 5 s), hand its partitions off (sealing them), drain requests
// (up to 10 s) and close (cmd/strata serve).
const MinGracePeriodSeconds = 60

// Object is one decoded document.
type Object struct {
	Source string         // "file.yaml#N", N counting documents from 1
	Obj    runtime.Object // *appsv1.StatefulSet, *corev1.Service, ...
}

// Kind is the object's kind, e.g. "StatefulSet".
func (o Object) Kind() string { return o.Obj.GetObjectKind().GroupVersionKind().Kind }

// Name is the object's metadata.name.
func (o Object) Name() string { return meta(o.Obj).Name }

func (o Object) String() string { return fmt.Sprintf("%s: %s %s", o.Source, o.Kind(), o.Name()) }

var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// LoadDir decodes every document of every *.yaml file in dir.
func LoadDir(dir string) ([]Object, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("validate: no *.yaml files in %s", dir)
	}
	sort.Strings(files)
	var objs []Object
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		o, err := Decode(filepath.Base(f), data)
		objs = append(objs, o...)
		errs = append(errs, err)
	}
	return objs, errors.Join(errs...)
}

// Decode strictly decodes each YAML document of data (documents holding
// only comments are skipped). name labels errors and Object.Source.
func Decode(name string, data []byte) ([]Object, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []Object
	var errs []error
	for n := 1; ; n++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		src := fmt.Sprintf("%s#%d", name, n)
		if err != nil {
			return objs, fmt.Errorf("%s: %w", src, err)
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			errs = append(errs, fmt.Errorf("%s: not YAML: %w", src, err))
			continue
		}
		if probe == nil {
			continue // comments only
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src, err))
			continue
		}
		objs = append(objs, Object{Source: src, Obj: obj})
	}
	return objs, errors.Join(errs...)
}

func meta(obj runtime.Object) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return &o.ObjectMeta
	case *appsv1.Deployment:
		return &o.ObjectMeta
	case *appsv1.DaemonSet:
		return &o.ObjectMeta
	case *corev1.Service:
		return &o.ObjectMeta
	case *corev1.Secret:
		return &o.ObjectMeta
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.PersistentVolumeClaim:
		return &o.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return &o.ObjectMeta
	}
	return &metav1.ObjectMeta{}
}

// workload is a pod-creating object.
type workload struct {
	obj      Object
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim // a StatefulSet's volumeClaimTemplates
}

// set indexes the objects by kind and name.
type set struct {
	services  map[string]*corev1.Service
	secrets   map[string]*corev1.Secret
	configs   map[string]*corev1.ConfigMap
	pvcs      map[string]*corev1.PersistentVolumeClaim
	workloads []workload
	errs      []error
}

func (s *set) fail(o Object, format string, args ...any) {
	s.errs = append(s.errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
}

// Check checks the objects against each other; it returns every problem
// found, nil when there are none.
func Check(objs []Object) []error {
	s := &set{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		configs: map[string]*corev1.ConfigMap{}, pvcs: map[string]*corev1.PersistentVolumeClaim{}}
	seen := map[string]Object{}
	for _, o := range objs {
		key := o.Kind() + "/" + o.Name()
		if prev, dup := seen[key]; dup {
			s.fail(o, "a second %s named %q (the first is in %s)", o.Kind(), o.Name(), prev.Source)
		}
		seen[key] = o
		m := meta(o.Obj)
		if m.Namespace != "" {
			s.fail(o, "sets metadata.namespace %q; the manifests are namespace-less (kubectl apply -n NS)", m.Namespace)
		}
		for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
			s.fail(o, "metadata.name %q: %s", m.Name, msg)
		}
		s.labels(o, field.NewPath("metadata", "labels"), m.Labels)
		switch t := o.Obj.(type) {
		case *corev1.Service:
			s.services[t.Name] = t
			for _, msg := range validation.IsDNS1035Label(t.Name) {
				s.fail(o, "a Service name must be a DNS-1035 label: %s", msg)
			}
		case *corev1.Secret:
			s.secrets[t.Name] = t
		case *corev1.ConfigMap:
			s.configs[t.Name] = t
		case *corev1.PersistentVolumeClaim:
			s.pvcs[t.Name] = t
		case *appsv1.StatefulSet:
			s.workloads = append(s.workloads, workload{o, t.Spec.Selector, &t.Spec.Template, t.Spec.VolumeClaimTemplates})
		case *appsv1.Deployment:
			s.workloads = append(s.workloads, workload{o, t.Spec.Selector, &t.Spec.Template, nil})
		case *appsv1.DaemonSet:
			s.workloads = append(s.workloads, workload{o, t.Spec.Selector, &t.Spec.Template, nil})
		case *policyv1.PodDisruptionBudget:
		default:
			s.fail(o, "kind %s is not one this checker knows; teach it (deploy/validate) before shipping one", o.Kind())
		}
	}
	for _, w := range s.workloads {
		s.workload(w)
	}
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *corev1.Service:
			s.service(o, t)
		case *policyv1.PodDisruptionBudget:
			if sel := s.selector(o, t.Spec.Selector); sel != nil && len(s.selected(sel)) == 0 {
				s.fail(o, "selector %s selects no pod template in the manifests", sel)
			}
		case *appsv1.StatefulSet:
			s.statefulSet(o, t)
		}
	}
	return s.errs
}

func (s *set) labels(o Object, path *field.Path, l map[string]string) {
	for _, e := range metavalidation.ValidateLabels(l, path) {
		s.fail(o, "%v", e)
	}
}

// selector converts a workload or PDB selector; nil after a failure.
func (s *set) selector(o Object, ls *metav1.LabelSelector) labels.Selector {
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		s.fail(o, "has no selector (or an empty one, which selects every pod)")
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		s.fail(o, "selector: %v", err)
		return nil
	}
	return sel
}

// selected returns the workloads whose pod labels sel matches.
func (s *set) selected(sel labels.Selector) []workload {
	var out []workload
	for _, w := range s.workloads {
		if sel.Matches(labels.Set(w.template.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func (s *set) workload(w workload) {
	o, spec := w.obj, &w.template.Spec
	s.labels(o, field.NewPath("spec", "template", "metadata", "labels"), w.template.Labels)
	if sel := s.selector(o, w.selector); sel != nil && !sel.Matches(labels.Set(w.template.Labels)) {
		s.fail(o, "selector %s does not match its pod template's labels %v", sel, w.template.Labels)
	}
	volumes := map[string]bool{}
	for _, c := range w.claims {
		volumes[c.Name] = true
	}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			s.fail(o, "volume %q is defined twice (volumes or volumeClaimTemplates)", v.Name)
		}
		volumes[v.Name] = true
		switch {
		case v.PersistentVolumeClaim != nil:
			if s.pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
				s.fail(o, "volume %q claims PersistentVolumeClaim %q, which the manifests do not define", v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.Secret != nil:
			if s.secrets[v.Secret.SecretName] == nil && !deref(v.Secret.Optional) {
				s.fail(o, "volume %q mounts Secret %q, which the manifests do not define", v.Name, v.Secret.SecretName)
			}
		case v.ConfigMap != nil:
			if s.configs[v.ConfigMap.Name] == nil && !deref(v.ConfigMap.Optional) {
				s.fail(o, "volume %q mounts ConfigMap %q, which the manifests do not define", v.Name, v.ConfigMap.Name)
			}
		}
	}
	ports := map[string]bool{}
	names := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			s.fail(o, "container name %q: %s", c.Name, msg)
		}
		if names[c.Name] {
			s.fail(o, "two containers are named %q", c.Name)
		}
		names[c.Name] = true
		for _, p := range c.Ports {
			if p.Name == "" {
				continue
			}
			for _, msg := range validation.IsValidPortName(p.Name) {
				s.fail(o, "container %s: port name %q: %s", c.Name, p.Name, msg)
			}
			if ports[p.Name] {
				s.fail(o, "container %s: port name %q is used twice in the pod", c.Name, p.Name)
			}
			ports[p.Name] = true
		}
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				s.fail(o, "container %s mounts volume %q at %s, but the pod has no such volume or volumeClaimTemplate", c.Name, m.Name, m.MountPath)
			}
			if mounts[m.MountPath] {
				s.fail(o, "container %s mounts two volumes at %s", c.Name, m.MountPath)
			}
			mounts[m.MountPath] = true
		}
		s.env(o, c)
		for _, pr := range probes(c) {
			if what, p := pr.what, pr.probe; p != nil && !probesAPort(c, p) {
				s.fail(o, "container %s: %s checks a port the container does not declare", c.Name, what)
			}
		}
	}
}

type namedProbe struct {
	what  string
	probe *corev1.Probe
}

func probes(c corev1.Container) []namedProbe {
	return []namedProbe{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}}
}

func deref(b *bool) bool { return b != nil && *b }

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// env checks that $(VAR) references name variables defined earlier in the
// list (Kubernetes leaves any other reference as literal text) and that
// secret and config map references name keys that exist.
func (s *set) env(o Object, c corev1.Container) {
	defined := map[string]bool{}
	for _, e := range c.Env {
		for _, m := range envRef.FindAllStringSubmatch(e.Value, -1) {
			if !defined[m[1]] {
				s.fail(o, "container %s: env %s refers to $(%s), which is not defined before it (Kubernetes would pass the text through unexpanded)", c.Name, e.Name, m[1])
			}
		}
		if e.ValueFrom != nil {
			if r := e.ValueFrom.SecretKeyRef; r != nil && !deref(r.Optional) {
				s.secretKey(o, c.Name, e.Name, r.Name, r.Key)
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !deref(r.Optional) {
				cm := s.configs[r.Name]
				if cm == nil {
					s.fail(o, "container %s: env %s reads ConfigMap %q, which the manifests do not define", c.Name, e.Name, r.Name)
				} else if _, ok := cm.Data[r.Key]; !ok {
					s.fail(o, "container %s: env %s reads key %q of ConfigMap %q, which has no such key", c.Name, e.Name, r.Key, r.Name)
				}
			}
		}
		defined[e.Name] = true
	}
	for _, f := range c.EnvFrom {
		if f.SecretRef != nil && !deref(f.SecretRef.Optional) && s.secrets[f.SecretRef.Name] == nil {
			s.fail(o, "container %s: envFrom reads Secret %q, which the manifests do not define", c.Name, f.SecretRef.Name)
		}
		if f.ConfigMapRef != nil && !deref(f.ConfigMapRef.Optional) && s.configs[f.ConfigMapRef.Name] == nil {
			s.fail(o, "container %s: envFrom reads ConfigMap %q, which the manifests do not define", c.Name, f.ConfigMapRef.Name)
		}
	}
}

func (s *set) secretKey(o Object, container, env, name, key string) {
	sec := s.secrets[name]
	if sec == nil {
		s.fail(o, "container %s: env %s reads Secret %q, which the manifests do not define", container, env, name)
		return
	}
	_, inData := sec.Data[key]
	_, inString := sec.StringData[key]
	if !inData && !inString {
		s.fail(o, "container %s: env %s reads key %q of Secret %q, which has no such key", container, env, key, name)
	}
}

// containerPort finds the container's port that p (a number or a name) means.
func containerPort(c corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func probesAPort(c corev1.Container, p *corev1.Probe) bool {
	switch {
	case p.GRPC != nil:
		_, ok := containerPort(c, intstr.FromInt32(p.GRPC.Port))
		return ok
	case p.HTTPGet != nil:
		_, ok := containerPort(c, p.HTTPGet.Port)
		return ok
	case p.TCPSocket != nil:
		_, ok := containerPort(c, p.TCPSocket.Port)
		return ok
	}
	return true // exec: no port
}

func (s *set) service(o Object, svc *corev1.Service) {
	if len(svc.Spec.Selector) == 0 {
		s.fail(o, "has no selector: it would get no endpoints from the manifests' pods")
		return
	}
	pods := s.selected(labels.SelectorFromSet(svc.Spec.Selector))
	if len(pods) == 0 {
		s.fail(o, "selector %v selects no pod template in the manifests", svc.Spec.Selector)
		return
	}
	for _, p := range svc.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		for _, w := range pods {
			found := false
			for _, c := range w.template.Spec.Containers {
				if cp, ok := containerPort(c, target); ok && protocol(cp) == proto {
					found = true
				}
			}
			if !found {
				s.fail(o, "port %q targets %s/%s, which the pods of %s do not declare", p.Name, target.String(), proto, w.obj)
			}
		}
	}
}

func protocol(p corev1.ContainerPort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

// statefulSet checks a StatefulSet's headless Service and, for its strata
// broker containers (those that set STRATA_LISTEN), how they are wired.
func (s *set) statefulSet(o Object, st *appsv1.StatefulSet) {
	svc := s.services[st.Spec.ServiceName]
	switch {
	case st.Spec.ServiceName == "":
		s.fail(o, "has no serviceName: its pods get no stable DNS names")
	case svc == nil:
		s.fail(o, "serviceName %q names no Service in the manifests", st.Spec.ServiceName)
	default:
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			s.fail(o, "serviceName %q names a Service that is not headless (clusterIP: None)", svc.Name)
		}
		if !svc.Spec.PublishNotReadyAddresses {
			s.fail(o, "serviceName %q names a Service without publishNotReadyAddresses: true; starting brokers could not resolve their seeds", svc.Name)
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(st.Spec.Template.Labels)) {
			s.fail(o, "serviceName %q names a Service whose selector %v does not select this StatefulSet's pods", svc.Name, svc.Spec.Selector)
		}
	}
	replicas := int32(1)
	if st.Spec.Replicas != nil {
		replicas = *st.Spec.Replicas
	}
	spec := &st.Spec.Template.Spec
	for _, c := range spec.Containers {
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		listen, ok := env["STRATA_LISTEN"]
		if !ok {
			continue
		}
		grpcPort, gossipPort := s.brokerPort(o, c, "grpc", listen), s.brokerPort(o, c, "gossip", env["STRATA_GOSSIP_LISTEN"])
		for _, pr := range probes(c) {
			what, p := pr.what, pr.probe
			switch {
			case p == nil && what != "startupProbe":
				s.fail(o, "container %s has no %s", c.Name, what)
			case p == nil:
			case p.GRPC == nil:
				s.fail(o, "container %s: %s is not a gRPC probe (grpc: {port: %d}); the broker serves grpc.health.v1.Health", c.Name, what, grpcPort)
			case p.GRPC.Port != grpcPort:
				s.fail(o, "container %s: %s probes port %d, not the gRPC port %d", c.Name, what, p.GRPC.Port, grpcPort)
			}
		}
		if id := env["STRATA_NODE_ID"]; id.Value != "$(POD_NAME)" || !fromField(env["POD_NAME"], "metadata.name") {
			s.fail(o, "container %s: STRATA_NODE_ID must be $(POD_NAME), with POD_NAME from metadata.name (unique per pod, stable across restarts)", c.Name)
		}
		adv := env["STRATA_ADVERTISE"].Value
		if !strings.HasPrefix(adv, "$(POD_NAME)."+st.Spec.ServiceName+".") || !strings.HasSuffix(adv, ":"+strconv.Itoa(int(grpcPort))) {
			s.fail(o, "container %s: STRATA_ADVERTISE %q is not $(POD_NAME).%s...:%d, the pod's stable DNS name and gRPC port", c.Name, adv, st.Spec.ServiceName, grpcPort)
		}
		if gadv := env["STRATA_GOSSIP_ADVERTISE"]; gadv.Value != "" && !strings.HasSuffix(gadv.Value, ":"+strconv.Itoa(int(gossipPort))) {
			s.fail(o, "container %s: STRATA_GOSSIP_ADVERTISE %q does not end in the gossip port :%d", c.Name, gadv.Value, gossipPort)
		}
		s.seeds(o, st, c.Name, env["STRATA_JOIN"].Value, replicas, gossipPort)
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	var preStop int64
	for _, c := range spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = max(preStop, c.Lifecycle.PreStop.Sleep.Seconds)
		}
	}
	grace -= preStop
	if grace < MinGracePeriodSeconds {
		s.fail(o, "terminationGracePeriodSeconds leaves %d s after preStop; a broker's drain needs %d s", grace, MinGracePeriodSeconds)
	}
}

func fromField(e corev1.EnvVar, path string) bool {
	return e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path
}

// brokerPort is the container port named name, which must be the port of
// the broker's listen address (HOST:PORT in e).
func (s *set) brokerPort(o Object, c corev1.Container, name string, e corev1.EnvVar) int32 {
	cp, ok := containerPort(c, intstr.FromString(name))
	if !ok {
		s.fail(o, "container %s declares no port named %q", c.Name, name)
		return 0
	}
	if !strings.HasSuffix(e.Value, ":"+strconv.Itoa(int(cp.ContainerPort))) {
		s.fail(o, "container %s: %s=%q does not listen on its %q port %d", c.Name, e.Name, e.Value, name, cp.ContainerPort)
	}
	return cp.ContainerPort
}

// seeds checks STRATA_JOIN: each seed is NAME-I.SERVICE....:GOSSIPPORT for
// a pod I that exists. The list is the same in every pod, so some pods name
// themselves, and reaching itself counts as a join (memberlist): pods
// started together, before they can reach each other, would each stay a
// cluster of one. So the pods must start in order.
func (s *set) seeds(o Object, st *appsv1.StatefulSet, container, join string, replicas, gossipPort int32) {
	if join == "" {
		s.fail(o, "container %s sets no STRATA_JOIN: each pod would start a cluster of its own", container)
		return
	}
	if st.Spec.PodManagementPolicy == appsv1.ParallelPodManagement {
		s.fail(o, "podManagementPolicy is Parallel, but its pods are among their own seeds (STRATA_JOIN): pods started together would each join only themselves; use OrderedReady")
	}
	seed := regexp.MustCompile(`^` + regexp.QuoteMeta(st.Name) + `-([0-9]+)\.` + regexp.QuoteMeta(st.Spec.ServiceName) + `\.[^:]*:([0-9]+)$`)
	for _, a := range strings.Split(join, ",") {
		m := seed.FindStringSubmatch(a)
		if m == nil {
			s.fail(o, "container %s: seed %q in STRATA_JOIN is not %s-I.%s...:PORT", container, a, st.Name, st.Spec.ServiceName)
			continue
		}
		if i, _ := strconv.Atoi(m[1]); int32(i) >= replicas {
			s.fail(o, "container %s: seed %q in STRATA_JOIN is pod %d, but there are %d replicas", container, a, i, replicas)
		}
		if m[2] != strconv.Itoa(int(gossipPort)) {
			s.fail(o, "container %s: seed %q in STRATA_JOIN is not on the gossip port %d", container, a, gossipPort)
		}
	}
}
