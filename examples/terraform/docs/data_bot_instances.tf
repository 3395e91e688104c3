# Fail a nightly job when an agent runs an old version or has not renewed for a day.
data "machineid_bot_instances" "stale" {
  not_seen_since = "24h"
}

data "machineid_bot_instances" "outdated" {
  version_older_than = "0.1.0"
}

output "agents_to_look_at" {
  value = concat(data.machineid_bot_instances.stale.instances[*].instance_id,
  data.machineid_bot_instances.outdated.instances[*].instance_id)
}
