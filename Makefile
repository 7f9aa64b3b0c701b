# Thin wrappers; .ci/run is the source of truth for CI.
.PHONY: fmt lint test bench

fmt:
	gofmt -w $$(git ls-files '*.go')

lint:
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

test:
	go test -race ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...
