// Machine identity as code: roles, join tokens and bots of a machineid cluster, and the rendered configuration of the bot agent.
package machineid
