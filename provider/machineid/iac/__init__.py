"""The provider core, shared by the Pulumi and Terraform adapters (pulumi-go-provider's `infer`, fwserver's role).

Everything here speaks snake_case model names and structured field paths; it knows nothing of URNs, camelCase,
PropertyDiff kinds, cty or AttributePaths. Each adapter translates its wire to these plain values and back:

    resource.py   the flat view of a model kind (metadata + spec + provider-only inputs + outputs)
    settings.py   provider-only inputs and outputs (bot onboarding and rendering, token options)
    context.py    what a handler may use of the provider (client, clock, log, address, planned names, stop)
    handlers/     one handler per resource (role.py, token.py, bot.py; base.py): create, read, update, delete,
                  import, IDs, per-kind rules
    core.py       check (with unknowns), diff, the plan rules and the CRUD entry points the adapters call
    config.py     the provider configuration and its environment defaults
    functions.py  cluster info and agent rendering (Pulumi functions, Terraform data sources)
    plan.py       a plan's changes as model objects, for `machineid review` (the adapters' plan readers fill it)
    unknown.py    the neutral "not known yet" marker
"""
