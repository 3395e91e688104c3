// A minimal Pulumi resource provider built with pulumi-go-provider's infer package: the Go baseline of
// benchmarks/bench_pulumi.py. One custom resource, gobench:index:Thing, with two string inputs; Create and Delete
// touch nothing outside the process, so a run measures the engine + protocol + framework cost per resource.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pulumi/pulumi-go-provider/infer"
)

// Thing is a resource that exists only in Pulumi's state.
type Thing struct{}

// ThingArgs are the inputs: two strings, like a role's description and login.
type ThingArgs struct {
	Description string `pulumi:"description"`
	Login       string `pulumi:"login"`
}

// ThingState is what the engine stores: the inputs echoed back.
type ThingState struct {
	ThingArgs
}

// Create "creates" the thing: its ID is the resource name.
func (Thing) Create(ctx context.Context, req infer.CreateRequest[ThingArgs]) (infer.CreateResponse[ThingState], error) {
	return infer.CreateResponse[ThingState]{ID: req.Name, Output: ThingState{ThingArgs: req.Inputs}}, nil
}

// Delete does nothing: there is nothing outside the state to remove.
func (Thing) Delete(ctx context.Context, req infer.DeleteRequest[ThingState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

func main() {
	p, err := infer.NewProviderBuilder().
		WithResources(infer.Resource(Thing{})).
		Build()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
	if err := p.Run(context.Background(), "gobench", "0.1.0"); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
}
