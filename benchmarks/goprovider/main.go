// A minimal Pulumi resource provider built with pulumi-go-provider's infer package: the Go baseline of
// benchmarks/bench_pulumi.py. Two custom resources whose Create and Delete touch nothing outside the process, so a
// run measures the engine + protocol + framework cost per resource:
//   - gobench:index:Thing, two string inputs (the smallest useful resource);
//   - gobench:index:Role, the shape of machineid:Role as the benchmark uses it (name, description, allow.logins and
//     options.maxSessionTtl with its default), so the engine stores and compares the same amount of state as for ours.
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

// Role is a resource with machineid:Role's shape that exists only in Pulumi's state.
type Role struct{}

// RoleConditions mirrors a role's allow block (only logins).
type RoleConditions struct {
	Logins []string `pulumi:"logins,optional"`
}

// RoleOptions mirrors a role's options (only maxSessionTtl).
type RoleOptions struct {
	MaxSessionTtl *string `pulumi:"maxSessionTtl,optional"`
}

// RoleArgs are the inputs, as machineid:Role's.
type RoleArgs struct {
	Name        string          `pulumi:"name"`
	Description *string         `pulumi:"description,optional"`
	Allow       *RoleConditions `pulumi:"allow,optional"`
	Options     *RoleOptions    `pulumi:"options,optional"`
}

// Annotate gives maxSessionTtl machineid's default.
func (o *RoleOptions) Annotate(an infer.Annotator) {
	an.SetDefault(&o.MaxSessionTtl, "30h")
}

// Check fills options.maxSessionTtl when the program leaves options out, as machineid's Check carries the server's
// default into the inputs; infer's default alone applies only inside an options block the program wrote, which left
// this baseline's state one property smaller than ours.
func (Role) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[RoleArgs], error) {
	args, failures, err := infer.DefaultCheck[RoleArgs](ctx, req.NewInputs)
	if err == nil && len(failures) == 0 {
		if args.Options == nil {
			args.Options = &RoleOptions{}
		}
		if args.Options.MaxSessionTtl == nil {
			ttl := "30h"
			args.Options.MaxSessionTtl = &ttl
		}
	}
	return infer.CheckResponse[RoleArgs]{Inputs: args, Failures: failures}, err
}

// RoleState is what the engine stores: the inputs echoed back.
type RoleState struct {
	RoleArgs
}

// Create "creates" the role: its ID is its name, as for machineid:Role.
func (Role) Create(ctx context.Context, req infer.CreateRequest[RoleArgs]) (infer.CreateResponse[RoleState], error) {
	return infer.CreateResponse[RoleState]{ID: req.Inputs.Name, Output: RoleState{RoleArgs: req.Inputs}}, nil
}

// Delete does nothing: there is nothing outside the state to remove.
func (Role) Delete(ctx context.Context, req infer.DeleteRequest[RoleState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, nil
}

func main() {
	p, err := infer.NewProviderBuilder().
		WithResources(infer.Resource(Thing{}), infer.Resource(Role{})).
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
