module percore.dev/conformance/probe-go

go 1.22
