# Consul client agent for a node-per-host cluster: one of these on every host that runs a
# weft node, joined to the Consul servers. Written for Consul 1.10 and 1.11 and checked with
# `consul validate deploy/consul/` on 1.10.12; 1.12 to 1.16 also accept it (they read the
# top-level TLS keys below as deprecated aliases of their `tls {}` block, with a warning). weft talks only to this local agent
# (CONSUL_HTTP_ADDR=127.0.0.1:8500); the agent forwards to the servers and keeps the host's
# registrations in sync, so the servers see each host's weft node through its own agent.
#
#   consul agent -config-dir=/etc/consul.d      (this file as /etc/consul.d/agent.hcl)

datacenter = "dc1"
data_dir   = "/opt/consul"        # keeps registrations and check state across agent restarts
server     = false

# The address other agents (and, with serviceAddress: agent, other weft nodes) reach this
# host on: the IPv4 address of the interface with the default route. Set it explicitly on
# multi-homed hosts.
bind_addr      = "{{ GetDefaultInterfaces | include \"type\" \"IPv4\" | attr \"address\" }}"
advertise_addr = "{{ GetDefaultInterfaces | include \"type\" \"IPv4\" | attr \"address\" }}"

# The HTTP API for processes on this host only. In Kubernetes, where weft reaches the agent
# at the host IP (status.hostIP), use "127.0.0.1 {{ GetPrivateIP }}" instead.
client_addr = "127.0.0.1"
ports {
  http  = 8500
  https = -1
  grpc  = -1
  dns   = 8600
}

retry_join = ["consul-server-1.internal", "consul-server-2.internal", "consul-server-3.internal"]

# A client agent that is stopped leaves the cluster, and its services go with it.
leave_on_terminate = true

# Gossip encryption: the same key on every agent. It is a secret, so it goes in a file of its
# own beside this one, /etc/consul.d/secrets.hcl (mode 0600), which the agent merges:
#   encrypt = "<output of consul keygen>"
#   acl { tokens { agent = "<this agent's token>" } }

# RPC TLS between agents and servers (auto_encrypt hands clients their certificates).
# Top-level keys: Consul 1.10 and 1.11 have no `tls {}` block (it came in 1.12, which still
# reads these keys as deprecated aliases).
ca_file                = "/etc/consul.d/tls/consul-agent-ca.pem"
verify_incoming        = false
verify_outgoing        = true
verify_server_hostname = true
auto_encrypt {
  tls = true
}

acl {
  enabled        = true
  default_policy = "deny"
  down_policy    = "extend-cache"
  enable_token_persistence = true
  # The agent's own token (node:write for this node) is in secrets.hcl (above). weft brings
  # its own token (CONSUL_HTTP_TOKEN) with the policy in acl/weft-policy.hcl.
}

# weft uses TTL checks, which run no code on the agent: keep script checks off.
enable_script_checks       = false
enable_local_script_checks = false
disable_remote_exec        = true

# Check status changes are synced to the servers at once; this only paces output-only updates.
check_update_interval = "5m"

telemetry {
  prometheus_retention_time = "60s"
  disable_hostname          = true
}
