# strata: common tasks. `make test` is the whole suite (starts MinIO itself).
.PHONY: test serve demo vet fmt check bench bench-peers bench-smoke fuzz minio proto sim

test:           ## the whole test suite, with a real MinIO on loopback
	bash scripts/test.sh

serve:          ## run a broker on 127.0.0.1:7420 with the embedded file:// store
	go run ./cmd/strata serve

proto:          ## regenerate api/stratapb from api/proto
	bash scripts/genproto.sh

demo:           ## write, seal and replay a demo log on the embedded file:// store
	go run ./cmd/strata demo

vet:
	go vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

check:          ## what CI runs
	bash .ci/run

bench:          ## the benchmarks behind docs/performance.md (needs MinIO: started here)
	bash scripts/bench.sh

bench-peers:    ## strata next to NATS JetStream, Redis and RabbitMQ (streams and queues), full mode (~20 min); results in bench/harness/results/
	bash scripts/peers.sh install
	cd bench/harness && go run ./cmd/stratabench -out results/

bench-smoke:    ## the harness's quick mode and tests, as CI runs them (installs the peers)
	bash scripts/bench-smoke.sh

sim:            ## the ownership simulation, long mode: SIMSEEDS seeds (default 5000), every 10th with a sweep
	go test ./internal/sim -run 'TestSim$$' -count=1 -timeout 3h -sim.seeds=$(or $(SIMSEEDS),5000) -sim.sweeps=10 -sim.details=5

fuzz:           ## every fuzzer for FUZZTIME each (default 30s)
	bash scripts/fuzz.sh

minio:          ## build the pinned MinIO into the tool cache
	bash scripts/minio.sh install
