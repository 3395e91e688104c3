"""The Terraform/OpenTofu provider: the plugin protocol (tfplugin6, or tfplugin5 for older CLIs) served over
HashiCorp's go-plugin handshake and transport, as a thin adapter over machineid.iac, which holds the resource logic
that the Pulumi provider shares."""
