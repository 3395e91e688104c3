data "machineid_cluster" "this" {}

output "ca_pins" { value = data.machineid_cluster.this.ca_pins }
