# During an incident: stop the deployer bot everywhere for a day, with the reason its agent and the audit log show.
resource "machineid_lock" "deployer_incident" {
  name    = "deployer-incident-42"
  message = "deploy key seen in a public CI log (incident 42)"
  expires = "2026-12-07T18:00:00Z"
  target {
    bot = "deployer"
  }
}
