resource "machineid_bot" "ci" {
  name   = "ci"
  roles  = [machineid_role.deploy.name]
  traits = { logins = ["deploy"] }

  # Change to issue a new join token (re-onboard the bot without deleting it).
  token_rotation = 1
}

output "agent_start_command" { value = machineid_bot.ci.start_command }
output "agent_systemd_unit" { value = machineid_bot.ci.systemd_unit }
