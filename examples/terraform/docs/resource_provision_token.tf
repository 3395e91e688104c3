# A single-use join token; its name is the secret and is generated when left out.
resource "machineid_provision_token" "ci" {
  bot_name = machineid_bot.ci.name
  ttl      = "30m"
}

# An IAM token: any AWS identity its rules match joins until it expires.
resource "machineid_provision_token" "aws" {
  name        = "ci-on-aws"
  join_method = "iam"
  bot_name    = machineid_bot.ci.name
  expires     = "2027-06-30T00:00:00Z"
  allow {
    aws_account = "111111111111"
    aws_arn     = "arn:aws:sts::111111111111:assumed-role/ci-runner/*"
  }
}
