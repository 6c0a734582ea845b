# ACL policy for the token weft nodes use (CONSUL_HTTP_TOKEN / resolver.consul.token).
#
#   consul acl policy create -name weft -rules @deploy/consul/acl/weft-policy.hcl
#   consul acl token create -description "weft nodes" -policy-name weft
#
# weft registers one service per app id (service:write), passes its TTL checks (covered by
# service:write on the check's service) and reads the health of the apps it calls
# (service:read, node:read). Narrow the service prefix if your app ids share one.
service_prefix "" {
  policy = "write"
}
node_prefix "" {
  policy = "read"
}
agent_prefix "" {
  policy = "read"
}
