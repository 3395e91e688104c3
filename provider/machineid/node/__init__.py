"""What runs on an OpenSSH node: `machineid node setup` (installs the principals helper and sshd's drop-in),
`machineid node start` (joins, renews the host certificate, heartbeats, refreshes labels and revocations) and the
self-contained principals helper sshd runs at each login."""
