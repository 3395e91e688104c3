// Command terraform-provider-gobench is the baseline for benchmarks/bench_terraform.py: a minimal Terraform/OpenTofu
// provider written with github.com/hashicorp/terraform-plugin-framework whose resource gobench_role has the same
// schema shape as machineid_role and whose CRUD does nothing but copy the plan into the state (id = name).
//
// Served on protocol 6 as registry.opentofu.org/gobench/gobench; the benchmark installs the binary into a private
// plugin mirror as version 0.1.0.
package main

import (
	"context"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

const address = "registry.opentofu.org/gobench/gobench"

func main() {
	err := providerserver.Serve(context.Background(), func() provider.Provider { return &gobench{} },
		providerserver.ServeOpts{Address: address, ProtocolVersion: 6})
	if err != nil {
		log.Fatal(err)
	}
}

// ---------------------------------------------------------------- the provider

type gobench struct{}

func (p *gobench) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "gobench"
	resp.Version = "0.1.0"
}

func (p *gobench) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema.Description = "Benchmark baseline: resources whose CRUD does nothing."
}

func (p *gobench) Configure(_ context.Context, _ provider.ConfigureRequest, _ *provider.ConfigureResponse) {
}

func (p *gobench) Resources(_ context.Context) []func() resource.Resource {
	return []func() resource.Resource{func() resource.Resource { return &role{} }}
}

func (p *gobench) DataSources(_ context.Context) []func() datasource.DataSource { return nil }

// ---------------------------------------------------------------- gobench_role: machineid_role's shape

type role struct{}

func (r *role) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_role"
}

// Every optional attribute is optional+computed with a static default, like machineid_role's: a plan of an
// unchanged configuration is a no-op.
func optionalString(def string) schema.StringAttribute {
	return schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(def)}
}

func optionalStringList() schema.ListAttribute {
	return schema.ListAttribute{ElementType: types.StringType, Optional: true, Computed: true,
		Default: listdefault.StaticValue(types.ListValueMust(types.StringType, []attr.Value{}))}
}

func optionalMap(elem attr.Type) schema.MapAttribute {
	return schema.MapAttribute{ElementType: elem, Optional: true, Computed: true,
		Default: mapdefault.StaticValue(types.MapValueMust(elem, map[string]attr.Value{}))}
}

func conditions(description string) schema.SingleNestedBlock {
	return schema.SingleNestedBlock{
		Description: description,
		Attributes: map[string]schema.Attribute{
			"logins":      optionalStringList(),
			"node_labels": optionalMap(types.ListType{ElemType: types.StringType}),
		},
		Blocks: map[string]schema.Block{
			"rules": schema.ListNestedBlock{
				Description: "API access: resources and verbs.",
				NestedObject: schema.NestedBlockObject{Attributes: map[string]schema.Attribute{
					"resources": schema.ListAttribute{ElementType: types.StringType, Required: true},
					"verbs":     schema.ListAttribute{ElementType: types.StringType, Required: true},
				}},
			},
		},
	}
}

func (r *role) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A role (benchmark baseline: nothing is stored anywhere).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Required: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"description": optionalString(""),
			"labels":      optionalMap(types.StringType),
		},
		Blocks: map[string]schema.Block{
			"allow": conditions("What the role allows."),
			"deny":  conditions("What the role denies."),
			"options": schema.SingleNestedBlock{
				Description: "Role options.",
				Attributes:  map[string]schema.Attribute{"max_session_ttl": optionalString("30h")},
			},
		},
	}
}

// planToState copies the plan into the state and sets id = name: the whole of Create and Update.
func planToState(ctx context.Context, plan tfsdk.Plan, state *tfsdk.State) error {
	state.Raw = plan.Raw
	var name types.String
	if diags := plan.GetAttribute(ctx, path.Root("name"), &name); diags.HasError() {
		return diagsError(diags.Errors()[0].Detail())
	}
	if diags := state.SetAttribute(ctx, path.Root("id"), name); diags.HasError() {
		return diagsError(diags.Errors()[0].Detail())
	}
	return nil
}

type diagsError string

func (e diagsError) Error() string { return string(e) }

func (r *role) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if err := planToState(ctx, req.Plan, &resp.State); err != nil {
		resp.Diagnostics.AddError("create", err.Error())
	}
}

// Read keeps the state as it is (the framework starts the response from the request's state).
func (r *role) Read(_ context.Context, _ resource.ReadRequest, _ *resource.ReadResponse) {}

func (r *role) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if err := planToState(ctx, req.Plan, &resp.State); err != nil {
		resp.Diagnostics.AddError("update", err.Error())
	}
}

// Delete does nothing: the framework removes the resource from the state when no error is returned.
func (r *role) Delete(_ context.Context, _ resource.DeleteRequest, _ *resource.DeleteResponse) {}
