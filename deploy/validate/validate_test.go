package validate

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

const k8sDir = "../k8s"

// TestManifests: the shipped manifests decode strictly and pass every
// cross-reference check, and they hold what a strata cluster needs.
func TestManifests(t *testing.T) {
	objs, err := LoadDir(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range Check(objs) {
		t.Error(e)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Kind()]++
	}
	for kind, want := range map[string]int{"StatefulSet": 1, "Service": 3, "Deployment": 1, "PersistentVolumeClaim": 1, "Secret": 1, "PodDisruptionBudget": 1} {
		if kinds[kind] != want {
			t.Errorf("%d objects of kind %s in %s, want %d (all kinds: %v)", kinds[kind], kind, k8sDir, want, kinds)
		}
	}
}

// TestDecodeRejects: inline manifests that a lenient decoder would accept
// (dropping the bad part silently) fail strict decoding.
func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"misspelled field", `
apiVersion: v1
kind: Service
metadata:
  name: strata
spec:
  selctor:
    app: strata
  ports:
    - port: 7420
`, `unknown field "spec.selctor"`},
		{"field at the wrong level", `
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: strata
spec:
  serviceName: strata-headless
  selector: {matchLabels: {app: strata}}
  template:
    metadata: {labels: {app: strata}}
    terminationGracePeriodSeconds: 90
    spec:
      containers: [{name: strata, image: strata:dev}]
`, `unknown field "spec.template.terminationGracePeriodSeconds"`},
		{"duplicate field", `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: minio
spec:
  replicas: 1
  replicas: 2
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}}
    spec:
      containers: [{name: minio, image: minio}]
`, `"replicas" already set`},
		{"wrong type", `
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: strata
spec:
  replicas: three
`, `replicas`},
		{"bad quantity", `
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  resources: {requests: {storage: 20 gigabytes}}
`, `quantities must match`},
		{"unknown kind", `
apiVersion: policy/v1
kind: PodDisruptionBudge
metadata:
  name: strata
`, `no kind "PodDisruptionBudge" is registered`},
		{"no kind", `
apiVersion: v1
metadata:
  name: strata
`, `Object 'Kind' is missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A valid document first: the error must name the bad one.
			objs, err := Decode("inline.yaml", []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: ok}\n---"+tc.doc))
			if err == nil {
				t.Fatalf("decoded %v without an error", objs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "inline.yaml#2") {
				t.Errorf("error %q does not name the document (inline.yaml#2)", err)
			}
		})
	}
	// The misspelling is caught by strictness alone: the same scheme's
	// lenient decoder accepts it, silently dropping the field.
	doc := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selctor: {app: s}}\n")
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if _, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode(doc, nil, nil); err != nil {
		t.Fatalf("lenient decode failed too (%v): the test shows nothing about strictness", err)
	}
	if _, err := Decode("inline.yaml", doc); err == nil || !strings.Contains(err.Error(), "strict decoding error") {
		t.Errorf("strict decode of a misspelled field: %v, want a strict decoding error", err)
	}
}

// TestDecodeSkipsCommentDocuments: a document of comments only (a file
// header before the first ---) is no object.
func TestDecodeSkipsCommentDocuments(t *testing.T) {
	objs, err := Decode("c.yaml", []byte("# header\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n# trailer\n"))
	if err != nil || len(objs) != 1 || objs[0].Kind() != "Secret" || objs[0].Source != "c.yaml#2" {
		t.Fatalf("got %v, %v; want one Secret from c.yaml#2", objs, err)
	}
}

// TestChecksCatchBrokenManifests: each edit to the shipped manifests
// breaks one thing, and decoding or Check says so.
func TestChecksCatchBrokenManifests(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"misspelled serviceName", "strata.yaml", "  serviceName: strata-headless", "  servceName: strata-headless", `unknown field "spec.servceName"`},
		{"misspelled probe field", "strata.yaml", "          readinessProbe:\n            grpc:\n              port: 7420", "          readinessProbe:\n            grpc:\n              prot: 7420", `unknown field "spec.template.spec.containers[0].readinessProbe.grpc.prot"`},
		{"serviceName names no Service", "strata.yaml", "  serviceName: strata-headless", "  serviceName: strata-peers", `serviceName "strata-peers" names no Service`},
		{"headless Service hides starting pods", "strata.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "without publishNotReadyAddresses: true"},
		{"headless Service with a cluster IP", "strata.yaml", "  clusterIP: None\n", "", "is not headless"},
		{"selector does not match pod labels", "strata.yaml", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: strata\n      app.kubernetes.io/component: broker", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: strata\n      app.kubernetes.io/component: brokers", "does not match its pod template's labels"},
		{"Service selects no pod", "minio.yaml", "  selector:\n    app.kubernetes.io/name: minio\n  ports:", "  selector:\n    app.kubernetes.io/name: mini0\n  ports:", "selects no pod template"},
		{"Service targets a missing port", "minio.yaml", "targetPort: console", "targetPort: konsole", `targets konsole/TCP`},
		{"readiness probe on the wrong port", "strata.yaml", "          readinessProbe:\n            grpc:\n              port: 7420", "          readinessProbe:\n            grpc:\n              port: 7421", "readinessProbe checks a port the container does not declare"},
		{"liveness probe is not gRPC", "strata.yaml", "          livenessProbe:\n            grpc:\n              port: 7420", "          livenessProbe:\n            tcpSocket:\n              port: 7420", "livenessProbe is not a gRPC probe"},
		{"no readiness probe", "strata.yaml", "          readinessProbe:\n            grpc:\n              port: 7420\n            periodSeconds: 5\n            failureThreshold: 2\n", "", "has no readinessProbe"},
		{"mount of a missing volume", "strata.yaml", "            - name: tmp\n              mountPath: /tmp", "            - name: scratch\n              mountPath: /tmp", `mounts volume "scratch" at /tmp`},
		{"mount of a missing claim template", "strata.yaml", "            - name: data\n              mountPath: /var/lib/strata", "            - name: log\n              mountPath: /var/lib/strata", `mounts volume "log"`},
		{"claim of a missing PVC", "minio.yaml", "claimName: minio-data", "claimName: minio-dat", `PersistentVolumeClaim "minio-dat"`},
		{"secret key that does not exist", "strata.yaml", "                  key: AWS_SECRET_ACCESS_KEY", "                  key: AWS_SECRET_KEY", `key "AWS_SECRET_KEY" of Secret "strata-s3"`},
		{"env reference before its definition", "strata.yaml", "value: $(POD_IP):7946", "value: $(POD_ADDR):7946", "refers to $(POD_ADDR)"},
		{"node id not from the pod name", "strata.yaml", "              value: $(POD_NAME)\n", "              value: broker\n", "STRATA_NODE_ID must be $(POD_NAME)"},
		{"advertise not through the headless Service", "strata.yaml", "value: $(POD_NAME).strata-headless.$(POD_NAMESPACE).svc:7420", "value: $(POD_NAME).strata.$(POD_NAMESPACE).svc:7420", "STRATA_ADVERTISE"},
		{"seed beyond the replicas", "strata.yaml", "strata-2.strata-headless", "strata-3.strata-headless", "is pod 3, but there are 3 replicas"},
		{"pods started in parallel", "strata.yaml", "podManagementPolicy: OrderedReady", "podManagementPolicy: Parallel", "podManagementPolicy is Parallel"},
		{"seed on the gRPC port", "strata.yaml", "strata-0.strata-headless.$(POD_NAMESPACE).svc:7946", "strata-0.strata-headless.$(POD_NAMESPACE).svc:7420", "is not on the gossip port"},
		{"listen port is not the grpc port", "strata.yaml", "value: 0.0.0.0:7420", "value: 0.0.0.0:7430", `does not listen on its "grpc" port`},
		{"grace period shorter than the drain", "strata.yaml", "terminationGracePeriodSeconds: 90", "terminationGracePeriodSeconds: 30", "a broker's drain needs 60 s"},
		{"port name too long", "strata.yaml", "            - name: gossip-udp\n              containerPort: 7946", "            - name: gossip-over-udp4\n              containerPort: 7946", `port name "gossip-over-udp4"`},
		{"namespace set", "secret.example.yaml", "  name: strata-s3\n", "  name: strata-s3\n  namespace: default\n", "namespace-less"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkEdited(t, tc.file, tc.old, tc.new)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			all := strings.Join(msgs, "\n")
			if len(errs) == 0 {
				t.Fatalf("no error after editing %s", tc.file)
			}
			if !strings.Contains(all, tc.want) {
				t.Fatalf("errors do not say %q:\n%s", tc.want, all)
			}
		})
	}
}

// checkEdited decodes and checks deploy/k8s with the first occurrence of
// old in file replaced by new, returning the decode error and Check's.
func checkEdited(t *testing.T, file, old, new string) []error {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	var objs []Object
	var errs []error
	edited := false
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(p)
		if name == file {
			if !strings.Contains(string(data), old) {
				t.Fatalf("%s does not contain %q: update the test with the manifest", file, old)
			}
			data = []byte(strings.Replace(string(data), old, new, 1))
			edited = true
		}
		o, err := Decode(name, data)
		objs = append(objs, o...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !edited {
		t.Fatalf("no file %s in %s", file, k8sDir)
	}
	return append(errs, Check(objs)...)
}
